import { sql, type Selectable, type Transaction } from 'kysely';
import { Batcher, firstOfEachKey, perDatabase } from '../../db/batcher.ts';
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

/** A refresh token row with the fields of its grant that a rotation needs. */
interface PresentedToken extends RefreshToken {
  client_id: string;
  user_id: string | null;
  resource: string;
  grant_revoked_at: Date | null;
  grant_last_used_at: Date | null;
}

/** Reads a batch of refresh tokens by hash, with their grants. Returns each token's row, or undefined. */
async function readTokens(context: OAuthContext, hashes: string[]): Promise<(PresentedToken | undefined)[]> {
  const rows = await context.db
    .selectFrom('refresh_tokens')
    .innerJoin('grants', 'grants.id', 'refresh_tokens.grant_id')
    .selectAll('refresh_tokens')
    .select(['grants.client_id', 'grants.user_id', 'grants.resource', 'grants.revoked_at as grant_revoked_at', 'grants.last_used_at as grant_last_used_at'])
    .where('refresh_tokens.token_hash', 'in', hashes)
    .execute();
  const byHash = new Map(rows.map((row) => [row.token_hash, row]));
  return hashes.map((hash) => byHash.get(hash));
}

/** A rotation the fast path may complete: the token to mark rotated and its successor. */
interface Rotation {
  tokenId: string;
  grantId: string;
  scope: string;
  sealedResponse: string;
  successorId: string;
  successorHash: string;
}

/**
 * Rotates a batch of unused refresh tokens in one statement: each is marked
 * rotated and its successor stored, unless a concurrent request rotated it
 * first or its grant was revoked. Returns whether each rotation happened. A
 * token already in the batch is not rotated again: the transaction decides it.
 */
async function rotateTokens(context: OAuthContext, rotations: Rotation[]): Promise<boolean[]> {
  const { config } = context;
  const now = config.now();
  const expiresAt = new Date(now.getTime() + config.refreshTokenTtlSeconds * 1000);
  const unique = firstOfEachKey(rotations, (rotation) => rotation.tokenId);
  const column = <K extends keyof Rotation>(key: K) => unique.map((rotation) => rotation[key]);

  const result = await sql<{ successor_id: string }>`
    with request as (
      select * from unnest(
        ${column('tokenId')}::text[], ${column('grantId')}::text[], ${column('scope')}::text[],
        ${column('sealedResponse')}::text[], ${column('successorId')}::text[], ${column('successorHash')}::text[]
      ) as r(token_id, grant_id, scope, sealed_response, successor_id, successor_hash)
    ), rotated as (
      update refresh_tokens as token set rotated_at = ${now}, successor_response = r.sealed_response
      from request as r
      where token.id = r.token_id and token.rotated_at is null and token.revoked_at is null
        and exists (select 1 from grants where grants.id = r.grant_id and grants.revoked_at is null)
      returning token.grant_id, r.scope, r.successor_id, r.successor_hash
    ), stored as (
      insert into refresh_tokens (id, token_hash, grant_id, scope, created_at, expires_at)
      select successor_id, successor_hash, grant_id, scope, ${now}, ${expiresAt} from rotated
    )
    select successor_id from rotated`.execute(context.db);

  // Each rotation has its own successor id, so a result goes only to the request that stored it.
  const stored = new Set(result.rows.map((row) => row.successor_id));
  return rotations.map((rotation) => stored.has(rotation.successorId));
}

/** Returns the database's batchers of refresh reads and rotations, so concurrent refreshes share statements and commits. */
const batchersFor = perDatabase((context: OAuthContext) => ({
  reads: new Batcher((hashes: string[]) => readTokens(context, hashes), { maxSize: 64, concurrency: 1 }),
  rotations: new Batcher((rotations: Rotation[]) => rotateTokens(context, rotations), { maxSize: 64, concurrency: 1 }),
}));

/**
 * Rotates an unused refresh token with two batched statements: a read, then a
 * write that marks the token rotated and stores its successor, but only if no
 * concurrent request rotated it first. Returns undefined whenever the token is
 * in any other state, lost that race, or its batch failed, and the transaction
 * below then decides the request under its row lock.
 */
async function rotateUnusedToken(context: OAuthContext, client: Client, parameters: Parameters): Promise<TokenResponse | undefined> {
  const { db, config } = context;
  const now = config.now();
  const raw = parameters.refresh_token;
  const { reads, rotations } = batchersFor(context);

  // A failed read leaves the decision to the transaction below.
  const token = await reads.run(sha256Hex(raw)).catch(() => undefined);
  const usable = token !== undefined && token.client_id === client.id && token.grant_revoked_at === null;
  if (!usable || token.revoked_at !== null || token.rotated_at !== null || token.expires_at <= now) return undefined;

  checkBoundResource(config, parameters.resource, token.resource);
  const scope = narrowScope(context, token.scope, parameters.scope);
  const grant = { id: token.grant_id, user_id: token.user_id, client_id: token.client_id, resource: token.resource };
  const response = await signAccessToken(context, grant, scope);
  const successor = prepareRefreshToken(context);
  response.refresh_token = successor.token;

  let rotated: boolean;
  try {
    rotated = await rotations.run({
      tokenId: token.id,
      grantId: token.grant_id,
      // RFC 6749 section 6: the new refresh token keeps the presented token's scope.
      scope: token.scope,
      sealedResponse: sealResponse(response, raw, token.id),
      successorId: successor.row.id,
      successorHash: successor.row.token_hash,
    });
  } catch {
    // The whole batch rolled back, so this token is still unrotated.
    return undefined;
  }
  if (!rotated) return undefined;

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
