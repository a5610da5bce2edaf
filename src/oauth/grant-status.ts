import type { JWTPayload } from 'jose';
import type { GrantStatus } from '../db/auth-cache.ts';
import type { OAuthContext } from './context.ts';

/** Returns whether the authorization is active, and whose it is, from the cache or the database. */
export async function loadGrantStatus(context: OAuthContext, grantId: string): Promise<GrantStatus | undefined> {
  const { cache, db } = context;
  const cached = cache.enabled ? cache.grants.get(grantId) : undefined;
  if (cached !== undefined) return cached;

  const stamp = cache.stamp();
  const row = await db
    .selectFrom('grants')
    .select(['revoked_at', 'user_id', 'client_id'])
    .where('id', '=', grantId)
    .executeTakeFirst();
  if (row === undefined) return undefined;

  const status = { revokedAt: row.revoked_at, userId: row.user_id, clientId: row.client_id };
  cache.store(cache.grants, grantId, status, stamp);
  return status;
}

/**
 * Verifies an access token's signature, type, issuer, expiry and audience,
 * remembering verified claims by token so a token used again costs no
 * signature check. The expiry and audience are checked on every use.
 */
export async function verifyAccessTokenCached(
  context: OAuthContext,
  raw: string,
  audiences: string[] | undefined,
): Promise<JWTPayload> {
  const { cache, keys, config } = context;
  const now = config.now();
  let claims = cache.accessTokens.get(raw);

  if (claims === undefined) {
    claims = await keys.verifyAccessToken(raw, config.issuer, audiences, now);
    cache.accessTokens.set(raw, claims, Number(claims.exp) * 1000);
    return claims;
  }

  if (Number(claims.exp) * 1000 <= now.getTime()) throw new Error('The access token has expired');
  if (audiences !== undefined && !audiences.includes(String(claims.aud))) throw new Error('The access token is for another audience');
  return claims;
}
