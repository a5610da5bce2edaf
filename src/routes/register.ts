import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Client } from '../db/schema.ts';
import { deleteClient, findClient, registerClient, updateClient } from '../oauth/clients.ts';
import { OAuthError } from '../oauth/errors.ts';
import { describeClient, readRegistrationRequest } from '../oauth/registration.ts';
import { constantTimeEqual, sha256Hex } from '../oauth/secrets.ts';
import { recordEvent } from './web.ts';

const BEARER = /^Bearer\s+(\S+)$/i;

function bearerToken(request: FastifyRequest): string | undefined {
  return BEARER.exec(request.headers.authorization ?? '')?.[1];
}

function invalidToken(description: string): OAuthError {
  return new OAuthError('invalid_token', description, { status: 401, headers: { 'www-authenticate': 'Bearer realm="speedgate"' } });
}

function requireJson(request: FastifyRequest): void {
  const type = request.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw new OAuthError('invalid_client_metadata', 'The registration request must be sent as application/json');
  }
}

/** Registers RFC 7591 dynamic client registration and the RFC 7592 client configuration endpoint. */
export default async function registerRoutes(app: FastifyInstance): Promise<void> {
  const { db, config, scopes, rateLimiter } = app.speedgate;

  function checkInitialAccessToken(request: FastifyRequest): void {
    const expected = config.dcrInitialAccessToken;
    if (expected === undefined) return;
    const presented = bearerToken(request);
    if (presented === undefined || !constantTimeEqual(presented, expected)) {
      throw invalidToken('Registration requires a valid initial access token');
    }
  }

  // RFC 7592 section 3: a missing client and a wrong token get the same 401, so ids cannot be probed.
  async function authenticateConfiguration(request: FastifyRequest<{ Params: { clientId: string } }>): Promise<Client> {
    const presented = bearerToken(request);
    const client = await findClient(db, request.params.clientId);
    const matches = constantTimeEqual(sha256Hex(presented ?? ''), client?.registration_access_token_hash ?? '');
    if (presented === undefined || client === undefined || client.registration_access_token_hash === null || !matches) {
      throw invalidToken('The registration access token is invalid');
    }
    return client;
  }

  function sendClient(reply: FastifyReply, status: number, client: Client, secrets = {}) {
    return reply.status(status).header('cache-control', 'no-store').send(describeClient(client, config.issuer, secrets));
  }

  app.post('/o/register/', { bodyLimit: 16 * 1024 }, async (request, reply) => {
    if (!config.dcrEnabled) {
      throw new OAuthError('access_denied', 'Dynamic client registration is disabled on this server', { status: 403 });
    }

    // Counted before the initial access token is checked, so wrong tokens cannot be tried at full speed.
    const limit = await rateLimiter.hit(`register:${request.ip}`, config.dcrRateLimitPerHour, 3600);
    if (!limit.allowed) {
      reply.header('retry-after', String(limit.retryAfterSeconds));
      throw new OAuthError('invalid_request', 'Too many registrations from this address; retry later', { status: 429 });
    }
    checkInitialAccessToken(request);

    requireJson(request);
    const registration = readRegistrationRequest(request.body);
    const { client, clientSecret, registrationAccessToken } = await registerClient(
      db,
      scopes,
      { ...registration, registrationType: 'dynamic', withRegistrationAccessToken: true },
      config.now(),
    );

    recordEvent(request, 'client_registered', { clientId: client.id, detail: 'dynamic registration' }, 'client registered');
    return sendClient(reply, 201, client, { clientSecret, registrationAccessToken });
  });

  app.get<{ Params: { clientId: string } }>('/o/register/:clientId', async (request, reply) => {
    const client = await authenticateConfiguration(request);
    return sendClient(reply, 200, client);
  });

  app.put<{ Params: { clientId: string } }>('/o/register/:clientId', { bodyLimit: 16 * 1024 }, async (request, reply) => {
    const client = await authenticateConfiguration(request);
    requireJson(request);

    const body = request.body as Record<string, unknown> | null;
    if (body?.client_id !== client.id) {
      throw new OAuthError('invalid_client_metadata', 'client_id in the body must match the client being updated');
    }
    const secret = body.client_secret;
    if (secret !== undefined && (typeof secret !== 'string' || !constantTimeEqual(sha256Hex(secret), client.secret_hash ?? ''))) {
      throw new OAuthError('invalid_client_metadata', 'client_secret does not match the current secret');
    }

    const registration = readRegistrationRequest(body);
    const updated = await updateClient(db, scopes, client, { ...registration, registrationType: client.registration_type });
    recordEvent(request, 'client_updated', { clientId: client.id }, 'client registration updated');
    return sendClient(reply, 200, updated);
  });

  app.delete<{ Params: { clientId: string } }>('/o/register/:clientId', async (request, reply) => {
    const client = await authenticateConfiguration(request);
    await deleteClient(db, client.id);

    recordEvent(request, 'client_deleted', { clientId: client.id }, 'client registration deleted');
    return reply.status(204).send();
  });
}
