import type { OAuthContext } from '../oauth/context.ts';
import { apiResource } from '../oauth/context.ts';

/** The user and client an API request acts for, from a verified access token. */
export interface Principal {
  userId: string | null;
  clientId: string;
  scope: string;
  tokenType: 'access_token';
}

export type BearerResult =
  | { ok: true; principal: Principal }
  | { ok: false; error: 'invalid_request' | 'invalid_token' | 'missing'; description: string };

const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * Authenticates an API request's `Authorization: Bearer` header (RFC 6750).
 * An access token must carry a valid signature for this API's audience and
 * belong to an authorization that has not been revoked.
 */
export async function authenticateBearer(context: OAuthContext, header: string | undefined): Promise<BearerResult> {
  if (header === undefined || header === '') {
    return { ok: false, error: 'missing', description: 'An access token is required' };
  }

  const match = BEARER.exec(header);
  if (match === null) {
    return { ok: false, error: 'invalid_request', description: 'The Authorization header must be "Bearer <token>"' };
  }

  const { config, keys, db } = context;
  let payload;
  try {
    payload = await keys.verifyAccessToken(match[1], config.issuer, apiResource(config), config.now());
  } catch {
    return { ok: false, error: 'invalid_token', description: 'The access token is invalid or expired' };
  }

  const grantId = payload.grant_id;
  if (typeof grantId !== 'string' || typeof payload.scope !== 'string' || typeof payload.client_id !== 'string') {
    return { ok: false, error: 'invalid_token', description: 'The access token is invalid or expired' };
  }

  // Revoking an authorization must stop its access tokens at once, not at expiry.
  const grant = await db.selectFrom('grants').select(['revoked_at', 'user_id']).where('id', '=', grantId).executeTakeFirst();
  if (grant === undefined || grant.revoked_at !== null) {
    return { ok: false, error: 'invalid_token', description: 'The access token has been revoked' };
  }

  return {
    ok: true,
    principal: { userId: grant.user_id, clientId: payload.client_id, scope: payload.scope, tokenType: 'access_token' },
  };
}
