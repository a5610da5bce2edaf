import { sql } from 'kysely';
import type { PendingDevicePoll } from '../../db/auth-cache.ts';
import type { Client } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { checkBoundResource } from '../resources.ts';
import { sha256Hex } from '../secrets.ts';
import { createGrant, issueTokens } from '../tokens.ts';
import { unwrapOutcome, type GrantHandler, type GrantOutcome } from './types.ts';

/** How much earlier than the interval a poll may arrive, for network jitter, in milliseconds. */
const POLL_TOLERANCE_MS = 500;

/** RFC 8628 section 3.5: the interval grows by 5 seconds after each slow_down. */
const SLOW_DOWN_STEP_SECONDS = 5;

/** Returns whether a poll at `now` comes sooner than the interval allows after the one at `lastPolledAt` (epoch milliseconds). */
function pollingTooFast(lastPolledAt: number | null, intervalSeconds: number, now: Date): boolean {
  if (lastPolledAt === null) return false;
  const elapsed = now.getTime() - lastPolledAt;
  return elapsed < intervalSeconds * 1000 - POLL_TOLERANCE_MS;
}

function pendingError(tooFast: boolean, interval: number): OAuthError {
  if (tooFast) return new OAuthError('slow_down', `Polling too fast; wait at least ${interval} seconds between requests`);
  return new OAuthError('authorization_pending', 'The user has not yet approved the request');
}

/** Responds to a poll of a pending device code from this node's memory, and records the poll there. */
function pollFromMemory(poll: PendingDevicePoll, now: Date): OAuthError {
  const tooFast = pollingTooFast(poll.lastPolledAt, poll.intervalSeconds, now);
  if (tooFast) poll.intervalSeconds += SLOW_DOWN_STEP_SECONDS;
  poll.lastPolledAt = now.getTime();
  return pendingError(tooFast, poll.intervalSeconds);
}

/**
 * Handles a poll of a pending, unexpired device code in one statement: it
 * records the poll, grows the interval when the client polls too fast, and
 * returns the code's poll state. Returns undefined for a code in any other
 * state, which the full transaction then handles.
 */
async function pollPendingCode(
  context: OAuthContext,
  client: Client,
  codeHash: string,
  now: Date,
): Promise<{ poll: PendingDevicePoll; slowedDown: boolean } | undefined> {
  const earliest = sql`${now}::timestamptz - make_interval(secs => previous.interval_seconds - ${POLL_TOLERANCE_MS / 1000}::float8)`;
  const result = await sql<{ previous_interval: number; interval_seconds: number; expires_at: Date }>`
    update device_codes as code set
      last_polled_at = ${now},
      interval_seconds = case when previous.last_polled_at > ${earliest}
        then previous.interval_seconds + ${SLOW_DOWN_STEP_SECONDS} else previous.interval_seconds end
    from (
      select id, last_polled_at, interval_seconds from device_codes
      where device_code_hash = ${codeHash} for update
    ) as previous
    where code.id = previous.id and code.client_id = ${client.id}
      and code.status = 'pending' and code.expires_at > ${now}
    returning previous.interval_seconds as previous_interval, code.interval_seconds, code.expires_at`.execute(context.db);

  const row = result.rows[0];
  if (row === undefined) return undefined;
  const poll = {
    clientId: client.id,
    expiresAt: row.expires_at.getTime(),
    intervalSeconds: row.interval_seconds,
    lastPolledAt: now.getTime(),
  };
  return { poll, slowedDown: row.interval_seconds > row.previous_interval };
}

/**
 * Responds to a poll of a code still pending: from memory when this node has
 * seen the code pending since the last announced decision, else with one
 * statement that also starts the in-memory record. Returns undefined for any
 * other state.
 *
 * NOTE: each node keeps its own record of the last poll, so a device whose
 * polls a load balancer spreads over several nodes can poll that many times
 * faster before one of them returns slow_down.
 */
async function respondToPendingPoll(context: OAuthContext, client: Client, codeHash: string, now: Date): Promise<OAuthError | undefined> {
  const { cache } = context;
  const remembered = cache.enabled ? cache.devicePolls.get(codeHash) : undefined;
  if (remembered !== undefined && remembered.clientId === client.id && now.getTime() < remembered.expiresAt) {
    return pollFromMemory(remembered, now);
  }

  const stamp = cache.stamp();
  const polled = await pollPendingCode(context, client, codeHash, now);
  if (polled === undefined) return undefined;

  cache.store(cache.devicePolls, codeHash, polled.poll, stamp);
  return pendingError(polled.slowedDown, polled.poll.intervalSeconds);
}

async function pollDeviceCode(context: OAuthContext, client: Client, parameters: Parameters): Promise<GrantOutcome> {
  const now = context.config.now();

  // Most polls find the code still pending, so those skip the transaction.
  const codeHash = sha256Hex(parameters.device_code);
  const pending = await respondToPendingPoll(context, client, codeHash, now);
  if (pending !== undefined) return { error: pending };

  return context.db.transaction().execute(async (trx): Promise<GrantOutcome> => {
    // The row lock makes concurrent polls of one device code take turns, so only one can consume it.
    const row = await trx
      .selectFrom('device_codes')
      .selectAll()
      .where('device_code_hash', '=', codeHash)
      .forUpdate()
      .executeTakeFirst();

    if (row === undefined || row.client_id !== client.id) {
      return { error: new OAuthError('invalid_grant', 'The device_code is invalid') };
    }
    if (row.status === 'consumed') {
      return { error: new OAuthError('invalid_grant', 'The device_code has already been used') };
    }
    if (row.expires_at <= now) {
      return { error: new OAuthError('expired_token', 'The device_code has expired; start a new device authorization') };
    }

    if (row.status === 'denied') {
      return { error: new OAuthError('access_denied', 'The user denied the authorization request') };
    }

    if (row.status === 'pending') {
      const tooFast = pollingTooFast(row.last_polled_at?.getTime() ?? null, row.interval_seconds, now);
      const interval = tooFast ? row.interval_seconds + SLOW_DOWN_STEP_SECONDS : row.interval_seconds;
      await trx
        .updateTable('device_codes')
        .set({ last_polled_at: now, interval_seconds: interval })
        .where('id', '=', row.id)
        .execute();

      if (tooFast) {
        const description = `Polling too fast; wait at least ${interval} seconds between requests`;
        return { error: new OAuthError('slow_down', description) };
      }
      return { error: new OAuthError('authorization_pending', 'The user has not yet approved the request') };
    }

    checkBoundResource(context.config, parameters.resource, row.resource);
    await trx.updateTable('device_codes').set({ status: 'consumed', last_polled_at: now }).where('id', '=', row.id).execute();

    const grant = await createGrant(trx, {
      userId: row.user_id,
      clientId: client.id,
      scope: row.scope,
      resource: row.resource,
      origin: 'device_code',
      now,
    });
    const withRefreshToken = client.grant_types.includes(GRANT_TYPES.refreshToken);
    context.audit.record({ event: 'token_issued', userId: row.user_id, clientId: client.id, detail: `device_code: ${row.scope}` });
    return { response: await issueTokens(trx, context, grant, row.scope, withRefreshToken) };
  });
}

/** The device authorization grant's token request (RFC 8628 section 3.4). */
export const deviceCodeGrant: GrantHandler = {
  grantType: GRANT_TYPES.deviceCode,
  requiredParameters: ['device_code'],
  async handle(context, client, parameters) {
    return unwrapOutcome(await pollDeviceCode(context, client, parameters));
  },
};
