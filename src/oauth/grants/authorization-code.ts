import { randomUUID } from 'node:crypto';
import { sql, type Selectable } from 'kysely';
import type { AuthorizationCodesTable, Client } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { codeChallengeOf, isWellFormedPkceValue, verifyCodeChallenge } from '../pkce.ts';
import { checkBoundResource, resolveResource } from '../resources.ts';
import { sha256Hex } from '../secrets.ts';
import { createGrant, issueTokens, prepareRefreshToken, revokeGrant, signAccessToken } from '../tokens.ts';
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

/**
 * Redeems an unused code in one statement that checks the request against the
 * code, consumes it, and creates the authorization and its refresh token. Only
 * a request that can succeed takes this path. Returns undefined when the
 * statement finds no such code, or lost a race, and the transaction below then
 * decides the request and its exact error.
 */
async function redeemUnusedCode(context: OAuthContext, client: Client, parameters: Parameters): Promise<GrantOutcome | undefined> {
  const { db, config } = context;
  const verifier = parameters.code_verifier;
  const resource = requestedResource(context, parameters);
  if (verifier === undefined || !isWellFormedPkceValue(verifier) || resource === null) return undefined;

  const now = config.now();
  const grantId = randomUUID();
  const redirectUri = parameters.redirect_uri ?? null;
  const refresh = client.grant_types.includes(GRANT_TYPES.refreshToken) ? prepareRefreshToken(context) : undefined;
  // A client's first authorization marks it used, so the purge of unused registrations keeps it.
  const markClientUsed = client.last_used_at !== null
    ? sql``
    : sql`, marked as (
        update clients set last_used_at = ${now}
        where id = ${client.id} and last_used_at is null and exists (select 1 from consumed)
      )`;
  const storeRefresh = refresh === undefined
    ? sql``
    : sql`, stored as (
        insert into refresh_tokens (id, token_hash, grant_id, scope, created_at, expires_at)
        select ${refresh.row.id}, ${refresh.row.token_hash}, id, scope, ${refresh.row.created_at}, ${refresh.row.expires_at}
        from created
      )`;

  // The challenge is public, sent in the authorization request, so comparing it in SQL reveals nothing.
  // Foreign keys are checked at the end of the statement, when the grant row exists.
  const result = await sql<{ user_id: string; scope: string; resource: string }>`
    with consumed as (
      update authorization_codes set consumed_at = ${now}, grant_id = ${grantId}
      where code_hash = ${sha256Hex(parameters.code)} and client_id = ${client.id}
        and consumed_at is null and expires_at > ${now}
        and code_challenge = ${codeChallengeOf(verifier)}
        and (not redirect_uri_sent or ${redirectUri}::text is not null)
        and (${redirectUri}::text is null or redirect_uri = ${redirectUri})
        and (${resource ?? null}::text is null or resource = ${resource ?? null})
      returning user_id, scope, resource
    ), created as (
      insert into grants (id, user_id, client_id, scope, resource, origin, created_at, last_used_at)
      select ${grantId}, user_id, ${client.id}, scope, resource, 'authorization_code', ${now}, ${now}
      from consumed
      returning id, scope
    )${storeRefresh}${markClientUsed}
    select user_id, scope, resource from consumed`.execute(db);
  const code = result.rows[0];
  if (code === undefined) return undefined;

  const grant = { id: grantId, user_id: code.user_id, client_id: client.id, resource: code.resource };
  const response = await signAccessToken(context, grant, code.scope);
  if (refresh !== undefined) response.refresh_token = refresh.token;

  // The client may be a cached row: give it the time the statement stored.
  client.last_used_at ??= now;
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
