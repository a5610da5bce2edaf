import { sql, type Selectable, type Transaction } from 'kysely';
import type { Client, Database, RefreshTokensTable } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { openResponse, sealResponse } from '../sealed-response.ts';
import { checkBoundResource } from '../resources.ts';
import { sha256Hex } from '../secrets.ts';
import { LAST_USED_RESOLUTION_MS, createRefreshToken, issueTokens, prepareRefreshToken, revokeGrant, signAccessToken, type TokenResponse } from '../tokens.ts';
import { unwrapOutcome, type GrantHandler, type GrantOutcome } from './types.ts';

type RefreshToken = Selectable<RefreshTokensTable>;

function narrowScope(context: OAuthContext, granted: string, requested: string | undefined): string {
  if (requested === undefined) return granted;

  const names = context.scopes.parse(requested);
  const grantedNames = granted.split(' ');
  const wider = names.filter((name) => !grantedNames.includes(name));
  if (wider.length > 0) {
    throw new OAuthError('invalid_scope', `The refresh token was not granted the scope ${wider.join(', ')}`);
  }
  if (names.length === 0) throw new OAuthError('invalid_scope', 'The scope parameter names no scope');
  return names.join(' ');
}

/**
 * Returns the response a rotation already produced when the same token comes
 * back inside the grace window (a lost response, two tabs) and its successor
 * is still unused. Returns undefined when the retry must count as reuse.
 */
async function findRetryResponse(
  trx: Transaction<Database>,
  context: OAuthContext,
  token: RefreshToken,
  raw: string,
): Promise<TokenResponse | undefined> {
  const { config } = context;
  if (token.rotated_at === null || token.successor_response === null) return undefined;
  if (config.now().getTime() - token.rotated_at.getTime() > config.refreshGraceSeconds * 1000) return undefined;

  const response = openResponse<TokenResponse>(token.successor_response, raw, token.id);
  if (response?.refresh_token === undefined) return undefined;

  const successor = await trx
    .selectFrom('refresh_tokens')
    .select(['rotated_at', 'revoked_at'])
    .where('token_hash', '=', sha256Hex(response.refresh_token))
    .executeTakeFirst();
  const unused = successor !== undefined && successor.rotated_at === null && successor.revoked_at === null;
  return unused ? response : undefined;
}

/**
 * Rotates an unused refresh token in two round trips: a read, then one
 * statement that marks the token rotated and stores its successor, but only
 * if no concurrent request rotated it first. Returns undefined whenever the
 * token is in any other state, or lost that race, and the transaction below
 * then decides the request under its row lock.
 */
async function rotateUnusedToken(context: OAuthContext, client: Client, parameters: Parameters): Promise<TokenResponse | undefined> {
  const { db, config } = context;
  const now = config.now();
  const raw = parameters.refresh_token;

  const token = await db
    .selectFrom('refresh_tokens')
    .innerJoin('grants', 'grants.id', 'refresh_tokens.grant_id')
    .selectAll('refresh_tokens')
    .select(['grants.client_id', 'grants.user_id', 'grants.resource', 'grants.revoked_at as grant_revoked_at', 'grants.last_used_at as grant_last_used_at'])
    .where('refresh_tokens.token_hash', '=', sha256Hex(raw))
    .executeTakeFirst();
  const usable = token !== undefined && token.client_id === client.id && token.grant_revoked_at === null;
  if (!usable || token.revoked_at !== null || token.rotated_at !== null || token.expires_at <= now) return undefined;

  checkBoundResource(config, parameters.resource, token.resource);
  const scope = narrowScope(context, token.scope, parameters.scope);
  const grant = { id: token.grant_id, user_id: token.user_id, client_id: token.client_id, resource: token.resource };
  const response = await signAccessToken(context, grant, scope);
  // RFC 6749 section 6: the new refresh token keeps the presented token's scope.
  const successor = prepareRefreshToken(context);
  response.refresh_token = successor.token;

  const row = successor.row;
  const result = await sql<{ id: string }>`
    with rotated as (
      update refresh_tokens set rotated_at = ${now}, successor_response = ${sealResponse(response, raw, token.id)}
      where id = ${token.id} and rotated_at is null and revoked_at is null
        and exists (select 1 from grants where grants.id = ${token.grant_id} and grants.revoked_at is null)
      returning grant_id
    )
    insert into refresh_tokens (id, token_hash, grant_id, scope, created_at, expires_at)
    select ${row.id}, ${row.token_hash}, grant_id, ${token.scope}, ${row.created_at}, ${row.expires_at} from rotated
    returning id`.execute(db);
  if (result.rows.length === 0) return undefined;

  if (token.grant_last_used_at === null || now.getTime() - token.grant_last_used_at.getTime() >= LAST_USED_RESOLUTION_MS) {
    await db.updateTable('grants').set({ last_used_at: now }).where('id', '=', token.grant_id).execute();
  }
  context.audit.record({ event: 'token_refreshed', userId: token.user_id, clientId: client.id, detail: scope });
  return response;
}

async function rotateRefreshToken(context: OAuthContext, client: Client, parameters: Parameters): Promise<GrantOutcome> {
  const now = context.config.now();
  const raw = parameters.refresh_token;
  const invalid = new OAuthError('invalid_grant', 'The refresh_token is invalid, expired or revoked');

  const rotated = await rotateUnusedToken(context, client, parameters);
  if (rotated !== undefined) return { response: rotated };

  return context.db.transaction().execute(async (trx): Promise<GrantOutcome> => {
    // The row lock makes concurrent refreshes of one token take turns: the first rotates, the rest retry.
    const token = await trx
      .selectFrom('refresh_tokens')
      .selectAll()
      .where('token_hash', '=', sha256Hex(raw))
      .forUpdate()
      .executeTakeFirst();
    if (token === undefined) return { error: invalid };

    const grant = await trx.selectFrom('grants').selectAll().where('id', '=', token.grant_id).executeTakeFirstOrThrow();
    if (grant.client_id !== client.id) return { error: invalid };
    if (grant.revoked_at !== null || token.revoked_at !== null) return { error: invalid };

    if (token.rotated_at !== null) {
      const retry = await findRetryResponse(trx, context, token, raw);
      if (retry !== undefined) return { response: retry };

      // A rotated token coming back after the grace window means two parties hold the family: end it.
      await revokeGrant(trx, grant.id, now);
      context.audit.record({ event: 'refresh_token_reuse_detected', userId: grant.user_id, clientId: grant.client_id });
      return { error: invalid };
    }
    if (token.expires_at <= now) return { error: invalid };

    checkBoundResource(context.config, parameters.resource, grant.resource);
    const scope = narrowScope(context, token.scope, parameters.scope);
    const response = await issueTokens(trx, context, grant, scope, false);
    // RFC 6749 section 6: the new refresh token keeps the presented token's scope,
    // so a narrowed request narrows only this access token.
    response.refresh_token = await createRefreshToken(trx, context, grant, token.scope);
    await trx
      .updateTable('refresh_tokens')
      .set({ rotated_at: now, successor_response: sealResponse(response, raw, token.id) })
      .where('id', '=', token.id)
      .execute();
    context.audit.record({ event: 'token_refreshed', userId: grant.user_id, clientId: grant.client_id, detail: scope });
    return { response };
  });
}

/** The refresh token grant (RFC 6749 section 6) with rotation on every use. */
export const refreshTokenGrant: GrantHandler = {
  grantType: GRANT_TYPES.refreshToken,
  requiredParameters: ['refresh_token'],
  async handle(context, client, parameters) {
    return unwrapOutcome(await rotateRefreshToken(context, client, parameters));
  },
};
