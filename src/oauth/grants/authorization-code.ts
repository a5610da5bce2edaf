import { randomUUID } from 'node:crypto';
import { sql, type Selectable } from 'kysely';
import { Batcher, firstOfEachKey, perDatabase } from '../../db/batcher.ts';
import type { AuthorizationCodesTable, Client } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { codeChallengeOf, isWellFormedPkceValue, verifyCodeChallenge } from '../pkce.ts';
import { checkBoundResource, resolveResource } from '../resources.ts';
import { sha256Hex } from '../secrets.ts';
import { createGrant, issueTokens, prepareRefreshToken, revokeGrant, signAccessToken, type TokenResponse } from '../tokens.ts';
import { unwrapOutcome, type GrantHandler, type GrantOutcome } from './types.ts';

type CodeRow = Selectable<AuthorizationCodesTable>;

function invalidGrant(description: string): GrantOutcome {
  return { error: new OAuthError('invalid_grant', description) };
}

/** Checks the request against an unused, unexpired code: PKCE, redirect URI and resource. */
function checkRedemption(context: OAuthContext, code: CodeRow, parameters: Parameters): GrantOutcome | undefined {
  const verifier = parameters.code_verifier;
  if (code.code_challenge === null) {
    // RFC 9700 section 2.1.1: a verifier without a challenge is a PKCE downgrade attempt.
    if (verifier !== undefined) return invalidGrant('A code_verifier was sent, but the authorization request had no code_challenge');
  } else if (verifier === undefined) {
    return { error: new OAuthError('invalid_request', 'Missing required parameter: code_verifier') };
  } else if (!verifyCodeChallenge(verifier, code.code_challenge)) {
    return invalidGrant('The code_verifier does not match the code_challenge');
  }

  const redirectUri = parameters.redirect_uri;
  if (code.redirect_uri_sent && redirectUri === undefined) {
    return { error: new OAuthError('invalid_request', 'Missing required parameter: redirect_uri') };
  }
  if (redirectUri !== undefined && redirectUri !== code.redirect_uri) {
    return invalidGrant('The redirect_uri does not match the authorization request');
  }

  checkBoundResource(context.config, parameters.resource, code.resource);
  return undefined;
}

/**
 * Returns the request's resource resolved as the code stores it: undefined
 * when absent, null when it names no resource this server serves.
 */
function requestedResource(context: OAuthContext, parameters: Parameters): string | null | undefined {
  if (parameters.resource === undefined) return undefined;
  try {
    return resolveResource(context.config, parameters.resource);
  } catch {
    return null;
  }
}

/** A redemption the fast path may complete: the values it checks and the rows it would create. */
interface Redemption {
  codeHash: string;
  clientId: string;
  codeChallenge: string;
  redirectUri: string | null;
  resource: string | null;
  grantId: string;
  refreshTokenId: string | null;
  refreshTokenHash: string | null;
}

interface RedeemedCode {
  grant_id: string;
  user_id: string;
  scope: string;
  resource: string;
}

/**
 * Redeems a batch of codes in one statement. Each code is checked against its
 * request, consumed, and given an authorization and a refresh token. Returns
 * each redemption's code row, or undefined for one that found no unused code
 * matching every check, and for every redemption of a code already in the
 * batch, which the transaction then decides.
 */
async function redeemBatch(context: OAuthContext, redemptions: Redemption[]): Promise<(RedeemedCode | undefined)[]> {
  const { config } = context;
  const now = config.now();
  const refreshExpiresAt = new Date(now.getTime() + config.refreshTokenTtlSeconds * 1000);
  const unique = firstOfEachKey(redemptions, (redemption) => redemption.codeHash);
  const column = <K extends keyof Redemption>(key: K) => unique.map((redemption) => redemption[key]);

  // The challenge is public, sent in the authorization request, so comparing it in SQL reveals nothing.
  // Foreign keys are checked at the end of the statement, when the grant rows exist. A client's first
  // authorization marks it used, so the purge of unused registrations keeps it.
  const result = await sql<RedeemedCode>`
    with request as (
      select * from unnest(
        ${column('codeHash')}::text[], ${column('clientId')}::text[], ${column('codeChallenge')}::text[],
        ${column('redirectUri')}::text[], ${column('resource')}::text[], ${column('grantId')}::text[],
        ${column('refreshTokenId')}::text[], ${column('refreshTokenHash')}::text[]
      ) as r(code_hash, client_id, code_challenge, redirect_uri, resource, grant_id, refresh_token_id, refresh_token_hash)
    ), consumed as (
      update authorization_codes as code set consumed_at = ${now}, grant_id = r.grant_id
      from request as r
      where code.code_hash = r.code_hash and code.client_id = r.client_id
        and code.consumed_at is null and code.expires_at > ${now}
        and code.code_challenge = r.code_challenge
        and (not code.redirect_uri_sent or r.redirect_uri is not null)
        and (r.redirect_uri is null or code.redirect_uri = r.redirect_uri)
        and (r.resource is null or code.resource = r.resource)
      returning code.code_hash, code.user_id, code.client_id, code.scope, code.resource,
        r.grant_id, r.refresh_token_id, r.refresh_token_hash
    ), created as (
      insert into grants (id, user_id, client_id, scope, resource, origin, created_at, last_used_at)
      select grant_id, user_id, client_id, scope, resource, 'authorization_code', ${now}, ${now}
      from consumed
    ), stored as (
      insert into refresh_tokens (id, token_hash, grant_id, scope, created_at, expires_at)
      select refresh_token_id, refresh_token_hash, grant_id, scope, ${now}, ${refreshExpiresAt}
      from consumed where refresh_token_id is not null
    ), marked as (
      update clients set last_used_at = ${now}
      where id in (select client_id from consumed) and last_used_at is null
    )
    select grant_id, user_id, scope, resource from consumed`.execute(context.db);

  // Each redemption has its own grant id, so a row goes only to the request whose checks it passed.
  const byGrant = new Map(result.rows.map((row) => [row.grant_id, row]));
  return redemptions.map((redemption) => byGrant.get(redemption.grantId));
}

/** Returns the database's batcher of code redemptions, so concurrent exchanges share statements and commits. */
const batcherFor = perDatabase(
  (context: OAuthContext) => new Batcher((redemptions: Redemption[]) => redeemBatch(context, redemptions), { maxSize: 64, concurrency: 1 }),
);

/**
 * Redeems an unused code with a batched statement that checks the request
 * against the code, consumes it, and creates the authorization and its refresh
 * token. Only a request that can succeed takes this path. Returns undefined
 * when the statement finds no such code, lost a race, or failed, and the
 * transaction below then decides the request and its exact error.
 */
async function redeemUnusedCode(context: OAuthContext, client: Client, parameters: Parameters): Promise<GrantOutcome | undefined> {
  const verifier = parameters.code_verifier;
  const resource = requestedResource(context, parameters);
  if (verifier === undefined || !isWellFormedPkceValue(verifier) || resource === null) return undefined;

  const refresh = client.grant_types.includes(GRANT_TYPES.refreshToken) ? prepareRefreshToken(context) : undefined;
  const redemption: Redemption = {
    codeHash: sha256Hex(parameters.code),
    clientId: client.id,
    codeChallenge: codeChallengeOf(verifier),
    redirectUri: parameters.redirect_uri ?? null,
    resource: resource ?? null,
    grantId: randomUUID(),
    refreshTokenId: refresh?.row.id ?? null,
    refreshTokenHash: refresh?.row.token_hash ?? null,
  };

  let code: RedeemedCode | undefined;
  try {
    code = await batcherFor(context).run(redemption);
  } catch {
    // The whole batch rolled back, so nothing of this redemption was stored.
    return undefined;
  }
  if (code === undefined) return undefined;

  const grant = { id: redemption.grantId, user_id: code.user_id, client_id: client.id, resource: code.resource };
  let response: TokenResponse;
  try {
    response = await signAccessToken(context, grant, code.scope);
  } catch (error) {
    // The code is spent: end the authorization so its stored refresh token cannot be used unseen.
    await revokeGrant(context.db, grant.id, context.config.now());
    throw error;
  }
  if (refresh !== undefined) response.refresh_token = refresh.token;

  // The client may be a cached row: give it the time the statement stored.
  client.last_used_at ??= context.config.now();
  context.audit.record({ event: 'token_issued', userId: code.user_id, clientId: client.id, detail: `authorization_code: ${code.scope}` });
  return { response };
}

async function redeemCode(context: OAuthContext, client: Client, parameters: Parameters): Promise<GrantOutcome> {
  const fast = await redeemUnusedCode(context, client, parameters);
  if (fast !== undefined) return fast;

  const now = context.config.now();
  return context.db.transaction().execute(async (trx): Promise<GrantOutcome> => {
    // The row lock lets only one of many concurrent redemptions see the code unused.
    const code = await trx
      .selectFrom('authorization_codes')
      .selectAll()
      .where('code_hash', '=', sha256Hex(parameters.code))
      .forUpdate()
      .executeTakeFirst();

    if (code === undefined) return invalidGrant('The authorization code is invalid');
    if (code.client_id !== client.id) return invalidGrant('The authorization code was issued to another client');

    // RFC 6749 section 4.1.2: a code used twice revokes what the first use issued.
    if (code.consumed_at !== null) {
      if (code.grant_id !== null) await revokeGrant(trx, code.grant_id, now);
      context.audit.record({ event: 'code_reuse_detected', userId: code.user_id, clientId: client.id });
      return invalidGrant('The authorization code has already been used');
    }
    if (code.expires_at <= now) return invalidGrant('The authorization code has expired');
    const rejected = checkRedemption(context, code, parameters);
    if (rejected !== undefined) return rejected;

    const grant = await createGrant(trx, {
      userId: code.user_id,
      clientId: client.id,
      scope: code.scope,
      resource: code.resource,
      origin: 'authorization_code',
      now,
    });
    await trx
      .updateTable('authorization_codes')
      .set({ consumed_at: now, grant_id: grant.id })
      .where('id', '=', code.id)
      .execute();

    const withRefreshToken = client.grant_types.includes(GRANT_TYPES.refreshToken);
    context.audit.record({ event: 'token_issued', userId: code.user_id, clientId: client.id, detail: `authorization_code: ${code.scope}` });
    return { response: await issueTokens(trx, context, grant, code.scope, withRefreshToken) };
  });
}

/** The authorization code grant's token request (RFC 6749 section 4.1.3) with PKCE (RFC 7636). */
export const authorizationCodeGrant: GrantHandler = {
  grantType: GRANT_TYPES.authorizationCode,
  // code_verifier is required too, unless an operator exempted this confidential client from PKCE.
  requiredParameters: ['code'],
  async handle(context, client, parameters) {
    return unwrapOutcome(await redeemCode(context, client, parameters));
  },
};
