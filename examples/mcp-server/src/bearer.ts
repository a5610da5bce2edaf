import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import { errorMessage, logEvent } from './log.ts';

/** An access token that Speedgate issued for this MCP server. */
export interface VerifiedToken {
  /** The raw JWT, kept to exchange it for an API token. */
  token: string;
  subject: string;
  scopes: string[];
}

export type BearerResult =
  | { ok: true; verified: VerifiedToken }
  | { ok: false; status: 400 | 401 | 503; error?: 'invalid_request' | 'invalid_token'; description: string };

/** Returns a function that checks a request's Authorization header (RFC 6750 section 2.1). */
export type TokenVerifier = (header: string | undefined) => Promise<BearerResult>;

/** An RFC 6750 `b64token` after the `Bearer` scheme, which is case-insensitive. */
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * Creates a verifier for RFC 9068 access tokens: signed with ES256 by a key
 * from Speedgate's JWKS, issued by `speedgateUrl`, with `resource` (this
 * server) as the audience, and unexpired. jose caches the fetched key set.
 */
export function createTokenVerifier(speedgateUrl: string, resource: string): TokenVerifier {
  const keys = createRemoteJWKSet(new URL(`${speedgateUrl}/.well-known/jwks.json`));
  const options = { issuer: speedgateUrl, audience: resource, typ: 'at+jwt', algorithms: ['ES256'] };

  return async (header) => {
    if (header === undefined || header === '') {
      return { ok: false, status: 401, description: 'An access token is required' };
    }
    const match = BEARER.exec(header);
    if (match === null) {
      const description = 'The Authorization header must be "Bearer <token>"';
      return { ok: false, status: 400, error: 'invalid_request', description };
    }

    try {
      const { payload } = await jwtVerify(match[1], keys, options);
      const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
      return { ok: true, verified: { token: match[1], subject: String(payload.sub), scopes } };
    } catch (error) {
      return describeVerifyFailure(error);
    }
  };
}

/**
 * jose error codes for a key set that could not be fetched or used: a
 * timeout, an invalid JWKS document, and a response other than 200 (which
 * jose 6 reports as ERR_JOSE_GENERIC). These are this server's problem, not
 * the client's token.
 */
const KEY_SET_FAILURES = ['ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JOSE_GENERIC'];

function describeVerifyFailure(error: unknown): BearerResult {
  // Errors other than jose's come from fetch: Speedgate could not be reached.
  if (!(error instanceof errors.JOSEError) || KEY_SET_FAILURES.includes(error.code)) {
    logEvent('error', 'could not fetch the JSON Web Key Set from Speedgate', { error: errorMessage(error) });
    return { ok: false, status: 503, description: 'The token could not be checked; try again later' };
  }

  const expired = error instanceof errors.JWTExpired;
  const description = expired ? 'The access token has expired' : 'The access token is invalid';
  return { ok: false, status: 401, error: 'invalid_token', description };
}

/**
 * Formats a `WWW-Authenticate: Bearer` challenge with the RFC 9728
 * `resource_metadata` parameter after `fields` such as `error` and `scope`.
 */
export function bearerChallenge(metadataUrl: string, fields: Record<string, string> = {}): string {
  const all = { ...fields, resource_metadata: metadataUrl };
  const parameters = Object.entries(all).map(([name, value]) => `${name}="${value.replace(/["\\]/g, '')}"`);
  return `Bearer ${parameters.join(', ')}`;
}
