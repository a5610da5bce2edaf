import type { JWTPayload } from 'jose';
import type { Grant, RefreshTokensTable } from '../db/schema.ts';
import type { Selectable } from 'kysely';
import type { OAuthContext } from './context.ts';
import { loadGrantStatus, verifyAccessTokenCached } from './grant-status.ts';
import { sha256Hex } from './secrets.ts';
import { REFRESH_TOKEN_PREFIX } from './tokens.ts';

/** A token this server issued, found from its raw value, with the authorization it belongs to. */
export type FoundToken =
  | { kind: 'refresh_token'; token: Selectable<RefreshTokensTable>; grant: FoundGrant }
  | { kind: 'access_token'; claims: JWTPayload; grant: FoundGrant };

/** The fields of the token's authorization that introspection and revocation use. */
export type FoundGrant = Pick<Grant, 'id' | 'client_id' | 'user_id' | 'revoked_at' | 'resource'>;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Finds a refresh token by its hash, or verifies an access token's signature
 * and issuer. Returns undefined for anything else, expired or not.
 */
export async function findToken(context: OAuthContext, raw: string): Promise<FoundToken | undefined> {
  const { db } = context;

  if (raw.startsWith(REFRESH_TOKEN_PREFIX)) {
    const token = await db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', sha256Hex(raw)).executeTakeFirst();
    if (token === undefined) return undefined;
    const grant = await db.selectFrom('grants').selectAll().where('id', '=', token.grant_id).executeTakeFirstOrThrow();
    return { kind: 'refresh_token', token, grant };
  }

  if (!JWT_SHAPE.test(raw)) return undefined;
  let claims: JWTPayload;
  try {
    claims = await verifyAccessTokenCached(context, raw, undefined);
  } catch {
    return undefined;
  }
  if (typeof claims.grant_id !== 'string') return undefined;

  const status = await loadGrantStatus(context, claims.grant_id);
  if (status === undefined) return undefined;
  const grant = {
    id: claims.grant_id,
    client_id: status.clientId,
    user_id: status.userId,
    revoked_at: status.revokedAt,
    resource: String(claims.aud),
  };
  return { kind: 'access_token', claims, grant };
}
