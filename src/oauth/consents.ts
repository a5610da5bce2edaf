import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.ts';
import type { AuthorizationRequest } from './authorization-request.ts';
import type { OAuthContext } from './context.ts';
import { randomToken, sha256Hex } from './secrets.ts';
import { revokeGrant } from './tokens.ts';

/** How long an authorization code may be redeemed, in seconds. */
export const AUTHORIZATION_CODE_TTL_SECONDS = 60;

type Executor = Kysely<Database> | Transaction<Database>;

/** Returns the scopes a user has already approved for a client. */
export async function findConsentedScopes(db: Executor, userId: string, clientId: string): Promise<string[]> {
  const row = await db
    .selectFrom('consents')
    .select('scope')
    .where('user_id', '=', userId)
    .where('client_id', '=', clientId)
    .executeTakeFirst();
  return row === undefined ? [] : row.scope.split(' ').filter((name) => name !== '');
}

/**
 * Records a decision on the consent page: the `granted` scopes are remembered,
 * and a `requested` scope the user unticked is forgotten even if approved before.
 */
export async function recordConsent(
  db: Executor,
  userId: string,
  clientId: string,
  decision: { requested: string[]; granted: string[] },
  now: Date,
): Promise<void> {
  const remembered = await findConsentedScopes(db, userId, clientId);
  const notRequested = remembered.filter((name) => !decision.requested.includes(name));
  const scope = [...new Set([...notRequested, ...decision.granted])].join(' ');

  await db
    .insertInto('consents')
    .values({ user_id: userId, client_id: clientId, scope, created_at: now, updated_at: now })
    .onConflict((conflict) => conflict.columns(['user_id', 'client_id']).doUpdateSet({ scope, updated_at: now }))
    .execute();
}

/**
 * Ends everything a user gave a client: the consent, the codes not yet
 * redeemed, and every authorization with its refresh and access tokens.
 */
export async function revokeClientAccess(db: Kysely<Database>, userId: string, clientId: string, now: Date): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom('consents').where('user_id', '=', userId).where('client_id', '=', clientId).execute();
    await trx
      .deleteFrom('authorization_codes')
      .where('user_id', '=', userId)
      .where('client_id', '=', clientId)
      .where('consumed_at', 'is', null)
      .execute();

    const grants = await trx
      .selectFrom('grants')
      .select('id')
      .where('user_id', '=', userId)
      .where('client_id', '=', clientId)
      .where('revoked_at', 'is', null)
      .execute();
    for (const grant of grants) await revokeGrant(trx, grant.id, now);
  });
}

/** Stores a single-use authorization code for an approved request and returns the raw code. */
export async function createAuthorizationCode(
  context: OAuthContext,
  request: AuthorizationRequest,
  userId: string,
  scope: string[],
): Promise<string> {
  const now = context.config.now();
  const code = randomToken(32);

  await context.db
    .insertInto('authorization_codes')
    .values({
      id: randomUUID(),
      code_hash: sha256Hex(code),
      client_id: request.client.id,
      user_id: userId,
      redirect_uri: request.redirectUri,
      redirect_uri_sent: request.redirectUriSent,
      scope: scope.join(' '),
      resource: request.resource,
      code_challenge: request.codeChallenge,
      created_at: now,
      expires_at: new Date(now.getTime() + AUTHORIZATION_CODE_TTL_SECONDS * 1000),
    })
    .execute();
  return code;
}
