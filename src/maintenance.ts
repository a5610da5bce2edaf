import type { FastifyBaseLogger } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from './config.ts';
import type { Database } from './db/schema.ts';

/** How often the purge runs, in milliseconds. */
const PURGE_INTERVAL_MS = 60 * 60 * 1000;

/**
 * Deletes dynamically registered clients never used for an authorization
 * within `dcrUnusedClientDays` of registering. Returns how many were deleted.
 */
export async function purgeUnusedClients(db: Kysely<Database>, config: Config): Promise<number> {
  const cutoff = new Date(config.now().getTime() - config.dcrUnusedClientDays * 86_400_000);
  const result = await db
    .deleteFrom('clients')
    .where('registration_type', '=', 'dynamic')
    .where('last_used_at', 'is', null)
    .where('created_at', '<', cutoff)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Starts the hourly purge. Returns the function that stops it. */
export function schedulePurge(db: Kysely<Database>, config: Config, log: FastifyBaseLogger): () => void {
  const run = async () => {
    try {
      const clients = await purgeUnusedClients(db, config);
      if (clients > 0) log.info({ event: 'purge', clients }, 'deleted unused dynamically registered clients');
    } catch (error) {
      log.error({ err: error }, 'purge failed; it runs again in an hour');
    }
  };
  const timer = setInterval(() => void run(), PURGE_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
