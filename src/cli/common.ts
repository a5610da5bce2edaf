import type { Kysely } from 'kysely';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { migrateToLatest, openDatabase } from '../db/database.ts';
import type { Database } from '../db/schema.ts';

/**
 * Runs an operator command against the configured database, migrated first.
 * Prints a failure as one line on standard error and exits with status 1,
 * or 2 for a usage or configuration error.
 */
export async function runCommand(body: (db: Kysely<Database>, config: Config) => Promise<void>): Promise<void> {
  let db: Kysely<Database> | undefined;
  try {
    const config = loadConfig();
    db = (await openDatabase(config)).db;
    await migrateToLatest(db);
    await body(db, config);
  } catch (error) {
    const usage = error instanceof ConfigError || error instanceof UsageError;
    console.error(`error: ${(error as Error).message}`);
    process.exitCode = usage ? 2 : 1;
  } finally {
    await db?.destroy();
  }
}

/** A mistake in a command's arguments: reported with the hint to run `--help`. */
export class UsageError extends Error {
  override name = 'UsageError';
}
