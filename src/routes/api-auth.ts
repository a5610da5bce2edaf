import type { FastifyReply, FastifyRequest, preValidationAsyncHookHandler } from 'fastify';
import { authenticateBearer, type Principal } from '../accounts/bearer.ts';
import { apiResource } from '../oauth/context.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '')}"`;
}

function challenge(request: FastifyRequest, fields: Record<string, string>): string {
  const { config } = request.server.speedgate;
  const metadata = `${config.issuer}/.well-known/oauth-protected-resource${new URL(apiResource(config)).pathname}`;
  const all: Record<string, string> = { realm: 'speedgate', ...fields, resource_metadata: metadata };
  return `Bearer ${Object.entries(all)
    .map(([name, value]) => `${name}=${quote(value)}`)
    .join(', ')}`;
}

function sendUnauthorized(request: FastifyRequest, reply: FastifyReply, error: string, description: string) {
  // RFC 6750 section 3.1: a request with no credentials gets a challenge without an error code.
  const fields: Record<string, string> = error === 'missing' ? {} : { error, error_description: description };
  const status = error === 'invalid_request' ? 400 : 401;
  return reply
    .status(status)
    .header('www-authenticate', challenge(request, fields))
    .send({ error: error === 'missing' ? 'invalid_token' : error, error_description: description });
}

/**
 * Returns a pre-validation hook that admits a request only with a valid bearer token
 * carrying every scope in `needed`: 401 without one, 403 insufficient_scope
 * when a scope is missing (RFC 6750 section 3.1).
 */
export function requireScopes(...needed: string[]): preValidationAsyncHookHandler {
  return async function checkBearer(request, reply) {
    const requester = { ip: request.ip, userAgent: request.headers['user-agent'] };
    const result = await authenticateBearer(request.server.speedgate, request.headers.authorization, requester);
    if (!result.ok) return sendUnauthorized(request, reply, result.error, result.description);

    const granted = new Set(result.principal.scope.split(' '));
    const missing = needed.filter((scope) => !granted.has(scope));
    if (missing.length > 0) {
      const description = `This request requires the scope ${missing.join(' ')}`;
      const fields = { error: 'insufficient_scope', error_description: description, scope: needed.join(' ') };
      return reply
        .status(403)
        .header('www-authenticate', challenge(request, fields))
        .send({ error: 'insufficient_scope', error_description: description, scope: needed.join(' ') });
    }
    request.principal = result.principal;
  };
}
