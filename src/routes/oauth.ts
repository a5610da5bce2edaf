import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { introspectPat } from '../accounts/personal-access-tokens.ts';
import { authenticateClient } from '../oauth/client-auth.ts';
import { startDeviceAuthorization } from '../oauth/device-codes.ts';
import { invalidRequest } from '../oauth/errors.ts';
import { introspectToken } from '../oauth/introspection.ts';
import { revokeToken } from '../oauth/revocation.ts';
import { readParameters } from '../oauth/parameters.ts';
import { handleTokenRequest } from '../oauth/token-endpoint.ts';
import { FailureLimiter } from './failure-limiter.ts';

// RFC 6749 section 5.1: token responses must not be cached.
function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

const FORM_MEDIA_TYPE = 'application/x-www-form-urlencoded';
const JSON_MEDIA_TYPE = 'application/json';

/**
 * Rejects a body that is neither form-encoded (RFC 6749 section 3.2) nor
 * JSON, which some platforms send, with a 400 invalid_request. It runs before
 * Fastify parses the body, so text and unregistered types get the same
 * error. A POST without a body passes, to be rejected for its missing parameters.
 */
async function requireFormBody(request: FastifyRequest): Promise<void> {
  const mediaType = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (mediaType === FORM_MEDIA_TYPE || mediaType === JSON_MEDIA_TYPE) return;

  const hasBody = request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
  if (mediaType === '' && !hasBody) return;
  throw invalidRequest(`The Content-Type must be ${FORM_MEDIA_TYPE} or ${JSON_MEDIA_TYPE}`);
}

function requester(request: FastifyRequest) {
  return { ip: request.ip, userAgent: request.headers['user-agent'] };
}

/** Registers the token, device authorization, revocation and introspection endpoints. */
export default async function oauthRoutes(app: FastifyInstance): Promise<void> {
  const context = app.speedgate;
  const failures = new FailureLimiter(context.rateLimiter, context.config.oauthFailureLimit, 60, context.config.now);
  app.addHook('onRequest', requireFormBody);
  app.addHook('preHandler', async (request) => failures.check(request));
  app.addHook('onError', async (request, _reply, error) => failures.record(request, error));

  app.post('/o/token/', async (request, reply) => {
    const parameters = readParameters(request.body);
    const response = await handleTokenRequest(context, parameters, request.headers.authorization);
    return noStore(reply).send(response);
  });

  app.post('/o/device-authorization/', async (request, reply) => {
    const parameters = readParameters(request.body);
    const client = await authenticateClient(context, parameters, request.headers.authorization);
    const response = await startDeviceAuthorization(context, client, parameters, requester(request));

    request.log.info({ clientId: client.id }, 'device authorization started');
    return noStore(reply).send(response);
  });

  app.post('/o/revoke_token/', async (request, reply) => {
    const parameters = readParameters(request.body);
    const client = await authenticateClient(context, parameters, request.headers.authorization);
    const revoked = await revokeToken(context, client, parameters);

    return noStore(reply).status(200).send();
  });

  app.post('/o/introspect/', async (request, reply) => {
    const parameters = readParameters(request.body);
    const client = await authenticateClient(context, parameters, request.headers.authorization);
    const describePat = (raw: string) => introspectPat(context.db, raw, context.config.issuer, context.config.now());
    return noStore(reply).send(await introspectToken(context, client, parameters, describePat));
  });
}
