import type { FastifyBaseLogger } from 'fastify';
import { sql, type Kysely } from 'kysely';
import type { Config } from './config.ts';
import { announceChange } from './db/invalidation.ts';
import type { Database } from './db/schema.ts';

/** How often the purge runs, in milliseconds. */
const PURGE_INTERVAL_MS = 10 * 60 * 1000;
/** Rows deleted per statement, so a purge never holds long locks. */
const BATCH_SIZE = 1000;
const DAY_MS = 86_400_000;
/** How long audit events are kept. */
const AUDIT_RETENTION_DAYS = 365;

type PurgeCounts = Record<string, number>;

// Deletes the rows of `table` whose primary key the `candidates` subquery selects, a batch at a time.
async function deleteInBatches(db: Kysely<Database>, table: string, key: string, condition: ReturnType<typeof sql>): Promise<number> {
  let total = 0;
  for (;;) {
    const result = await sql`
      delete from ${sql.table(table)} where ${sql.ref(key)} in (
        select ${sql.ref(key)} from ${sql.table(table)} where ${condition} limit ${BATCH_SIZE}
      )`.execute(db);
    const deleted = Number(result.numAffectedRows ?? 0n);
    total += deleted;
    if (deleted < BATCH_SIZE) return total;
  }
}

/**
 * Deletes what can no longer be used: expired codes, sessions, rate-limit
 * windows and refresh tokens, authorizations revoked longer ago than an
 * access token lives, old audit events, and dynamically registered clients
 * never used within `dcrUnusedClientDays`. Consumed codes and rotated refresh
 * tokens stay until they expire, so their reuse is still detected.
 */
export async function purgeExpired(db: Kysely<Database>, config: Config): Promise<PurgeCounts> {
  const now = config.now();
  const ago = (ms: number) => new Date(now.getTime() - ms);
  const accessTokenLife = config.accessTokenTtlSeconds * 1000;

  const counts: PurgeCounts = {
    authorization_codes: await deleteInBatches(db, 'authorization_codes', 'id', sql`expires_at < ${ago(DAY_MS)}`),
    device_codes: await deleteInBatches(db, 'device_codes', 'id', sql`expires_at < ${ago(DAY_MS)}`),
    sessions: await deleteInBatches(db, 'sessions', 'id_hash', sql`expires_at < ${now}`),
    rate_limits: await deleteInBatches(db, 'rate_limits', 'key', sql`window_ends_at < ${now}`),
    refresh_tokens: await deleteInBatches(db, 'refresh_tokens', 'id', sql`expires_at < ${now}`),
    grants: await deleteInBatches(db, 'grants', 'id', sql`revoked_at < ${ago(accessTokenLife)}`),
    audit_events: await deleteInBatches(db, 'audit_events', 'id', sql`created_at < ${ago(AUDIT_RETENTION_DAYS * DAY_MS)}`),
    clients: await deleteInBatches(
      db,
      'clients',
      'id',
      sql`registration_type = 'dynamic' and last_used_at is null and created_at < ${ago(config.dcrUnusedClientDays * DAY_MS)}`,
    ),
    signing_keys: await deleteInBatches(db, 'signing_keys', 'kid', sql`retired_at < ${ago(accessTokenLife + DAY_MS)}`),
  };

  // Purged clients may sit in node caches: drop every cached client.
  if (counts.clients > 0) await announceChange(db, 'client:*');

  // The sealed retry responses are useless once the grace window has passed.
  await db
    .updateTable('refresh_tokens')
    .set({ successor_response: null })
    .where('successor_response', 'is not', null)
    .where('rotated_at', '<', ago(config.refreshGraceSeconds * 1000))
    .execute();
  return counts;
}

/** Starts the purge every 10 minutes. Returns the function that stops it. */
export function schedulePurge(db: Kysely<Database>, config: Config, log: FastifyBaseLogger): () => void {
  const run = async () => {
    try {
      const counts = await purgeExpired(db, config);
      const deleted = Object.fromEntries(Object.entries(counts).filter(([, count]) => count > 0));
      if (Object.keys(deleted).length > 0) log.info({ event: 'purge', deleted }, 'purged expired rows');
    } catch (error) {
      log.error({ err: error }, 'purge failed; it runs again in 10 minutes');
    }
  };
  const timer = setInterval(() => void run(), PURGE_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
