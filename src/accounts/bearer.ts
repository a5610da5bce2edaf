import type { OAuthContext } from '../oauth/context.ts';
import { loadGrantStatus, verifyAccessTokenCached } from '../oauth/grant-status.ts';
import { apiResource } from '../oauth/context.ts';
import { normalizeResource } from '../oauth/resources.ts';
import type { LastUsedRecorder } from './last-used.ts';
import { PAT_PREFIX } from './pat-format.ts';
import { findActivePat } from './personal-access-tokens.ts';

/** The user and client an API request acts for, from a verified access token or a personal access token. */
export interface Principal {
  userId: string | null;
  /** The OAuth client the token was issued to; null for a personal access token. */
  clientId: string | null;
  scope: string;
  tokenType: 'access_token' | 'personal_access_token';
}

export type BearerResult =
  | { ok: true; principal: Principal }
  | { ok: false; error: 'invalid_request' | 'invalid_token' | 'missing'; description: string };

export interface BearerContext extends OAuthContext {
  lastUsed: LastUsedRecorder;
}

export interface Requester {
  ip: string;
  userAgent: string | undefined;
}

const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;
const INVALID = 'The access token is invalid or expired';

async function authenticatePat(context: BearerContext, raw: string, requester: Requester): Promise<BearerResult> {
  const now = context.config.now();
  const pat = await findActivePat(context.db, raw, now, context.cache);
  if (pat === undefined) return { ok: false, error: 'invalid_token', description: 'The personal access token is invalid, expired or revoked' };

  context.lastUsed.record(pat.id, { at: now, ip: requester.ip, userAgent: requester.userAgent?.slice(0, 500) ?? null });
  return { ok: true, principal: { userId: pat.user_id, clientId: null, scope: pat.scope, tokenType: 'personal_access_token' } };
}

async function authenticateAccessToken(context: BearerContext, raw: string): Promise<BearerResult> {
  const { config, keys, db } = context;
  let payload;
  try {
    // The API accepts tokens for itself and for this whole host, never for another resource server.
    const audiences = [normalizeResource(apiResource(config)), normalizeResource(config.issuer)].filter((uri): uri is string => uri !== undefined);
    payload = await verifyAccessTokenCached(context, raw, audiences);
  } catch {
    return { ok: false, error: 'invalid_token', description: INVALID };
  }

  const grantId = payload.grant_id;
  if (typeof grantId !== 'string' || typeof payload.scope !== 'string' || typeof payload.client_id !== 'string') {
    return { ok: false, error: 'invalid_token', description: INVALID };
  }

  // Revoking an authorization must stop its access tokens at once, not at expiry.
  const grant = await loadGrantStatus(context, grantId);
  if (grant === undefined || grant.revokedAt !== null) {
    return { ok: false, error: 'invalid_token', description: 'The access token has been revoked' };
  }

  return {
    ok: true,
    principal: { userId: grant.userId, clientId: payload.client_id, scope: payload.scope, tokenType: 'access_token' },
  };
}

/**
 * Authenticates an API request's `Authorization: Bearer` header (RFC 6750).
 * A personal access token must be well-formed, active and unexpired. An
 * access token must carry a valid signature for this API's audience and
 * belong to an authorization that has not been revoked.
 */
export async function authenticateBearer(
  context: BearerContext,
  header: string | undefined,
  requester: Requester,
): Promise<BearerResult> {
  if (header === undefined || header === '') {
    return { ok: false, error: 'missing', description: 'An access token is required' };
  }

  const match = BEARER.exec(header);
  if (match === null) {
    return { ok: false, error: 'invalid_request', description: 'The Authorization header must be "Bearer <token>"' };
  }

  const raw = match[1];
  if (raw.startsWith(PAT_PREFIX)) return authenticatePat(context, raw, requester);
  return authenticateAccessToken(context, raw);
}
