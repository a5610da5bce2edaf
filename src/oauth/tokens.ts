import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { announceChange } from '../db/invalidation.ts';
import type { Database, Grant } from '../db/schema.ts';
import type { OAuthContext } from './context.ts';
import { randomToken, sha256Hex } from './secrets.ts';

/** A successful token response (RFC 6749 section 5.1). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  refresh_token?: string;
}

export const REFRESH_TOKEN_PREFIX = 'sgr_';

/** Stores a new refresh token for `grant` and returns the raw token. */
export async function createRefreshToken(
  trx: Kysely<Database> | Transaction<Database>,
  context: OAuthContext,
  grant: Grant,
  scope: string,
): Promise<string> {
  const now = context.config.now();
  const token = `${REFRESH_TOKEN_PREFIX}${randomToken(32)}`;

  await trx
    .insertInto('refresh_tokens')
    .values({
      id: randomUUID(),
      token_hash: sha256Hex(token),
      grant_id: grant.id,
      scope,
      created_at: now,
      expires_at: new Date(now.getTime() + context.config.refreshTokenTtlSeconds * 1000),
    })
    .execute();
  return token;
}

/** Maximum age of an authorization's "last used" time before a token issuance updates it. */
export const LAST_USED_RESOLUTION_MS = 60_000;

/**
 * Records that the authorization issued a token, at most once a minute, so a
 * client fetching tokens in a loop does not write on every request.
 */
async function touchGrant(executor: Kysely<Database> | Transaction<Database>, grant: Grant, now: Date): Promise<void> {
  const last = grant.last_used_at;
  if (last !== null && now.getTime() - last.getTime() < LAST_USED_RESOLUTION_MS) return;

  await executor.updateTable('grants').set({ last_used_at: now }).where('id', '=', grant.id).execute();
  grant.last_used_at = now;
}

/** The authorization fields an access token names. */
export type TokenSubject = Pick<Grant, 'id' | 'user_id' | 'client_id' | 'resource'>;

/** Signs an RFC 9068 access token for the authorization and returns the token response without a refresh token. */
export async function signAccessToken(context: OAuthContext, grant: TokenSubject, scope: string): Promise<TokenResponse> {
  const { config, keys } = context;
  const accessToken = await keys.signAccessToken(
    {
      iss: config.issuer,
      sub: grant.user_id ?? grant.client_id,
      aud: grant.resource,
      client_id: grant.client_id,
      scope,
      jti: randomUUID(),
      grant_id: grant.id,
    },
    config.now(),
    config.accessTokenTtlSeconds,
  );
  return { access_token: accessToken, token_type: 'Bearer', expires_in: config.accessTokenTtlSeconds, scope };
}

/** Generates a refresh token not yet stored: the raw value for the client and the row fields that store its hash. */
export function prepareRefreshToken(context: OAuthContext) {
  const now = context.config.now();
  const token = `${REFRESH_TOKEN_PREFIX}${randomToken(32)}`;
  const row = {
    id: randomUUID(),
    token_hash: sha256Hex(token),
    created_at: now,
    expires_at: new Date(now.getTime() + context.config.refreshTokenTtlSeconds * 1000),
  };
  return { token, row };
}

/**
 * Signs an access token for `grant` with `scope`, and a refresh token when
 * `withRefreshToken` is set, inside the caller's transaction.
 */
export async function issueTokens(
  trx: Kysely<Database> | Transaction<Database>,
  context: OAuthContext,
  grant: Grant,
  scope: string,
  withRefreshToken: boolean,
): Promise<TokenResponse> {
  const now = context.config.now();
  const response = await signAccessToken(context, grant, scope);
  if (withRefreshToken) response.refresh_token = await createRefreshToken(trx, context, grant, scope);

  await touchGrant(trx, grant, now);
  return response;
}

/** Creates the authorization that a user's approval or a client's own credentials establish. */
export async function createGrant(
  trx: Transaction<Database>,
  values: { userId: string | null; clientId: string; scope: string; resource: string; origin: string; now: Date },
): Promise<Grant> {
  // A client's first authorization marks it used, so the purge of unused registrations keeps it.
  await trx
    .updateTable('clients')
    .set({ last_used_at: values.now })
    .where('id', '=', values.clientId)
    .where('last_used_at', 'is', null)
    .execute();

  return trx
    .insertInto('grants')
    .values({
      id: randomUUID(),
      user_id: values.userId,
      client_id: values.clientId,
      scope: values.scope,
      resource: values.resource,
      origin: values.origin,
      created_at: values.now,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Revokes an authorization and every refresh token in its family. */
export async function revokeGrant(trx: Kysely<Database> | Transaction<Database>, grantId: string, now: Date): Promise<void> {
  await announceChange(trx, `grant:${grantId}`);
  await trx
    .updateTable('grants')
    .set({ revoked_at: now })
    .where('id', '=', grantId)
    .where('revoked_at', 'is', null)
    .execute();
  await trx
    .updateTable('refresh_tokens')
    .set({ revoked_at: now })
    .where('grant_id', '=', grantId)
    .where('revoked_at', 'is', null)
    .execute();
}
