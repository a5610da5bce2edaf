import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { authenticateClient } from '../oauth/client-auth.ts';
import { startDeviceAuthorization } from '../oauth/device-codes.ts';
import { readParameters } from '../oauth/parameters.ts';
import { handleTokenRequest } from '../oauth/token-endpoint.ts';

// RFC 6749 section 5.1: token responses must not be cached.
function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

function requester(request: FastifyRequest) {
  return { ip: request.ip, userAgent: request.headers['user-agent'] };
}

/** The token endpoint and the device authorization endpoint. */
export default async function oauthRoutes(app: FastifyInstance): Promise<void> {
  const context = app.speedgate;

  app.post('/o/token/', async (request, reply) => {
    const parameters = readParameters(request.body);
    const response = await handleTokenRequest(context, parameters, request.headers.authorization);
    return noStore(reply).send(response);
  });

  app.post('/o/device-authorization/', async (request, reply) => {
    const parameters = readParameters(request.body);
    const client = await authenticateClient(context.db, parameters, request.headers.authorization);
    const response = await startDeviceAuthorization(context, client, parameters, requester(request));

    request.log.info({ clientId: client.id }, 'device authorization started');
    return noStore(reply).send(response);
  });
}
