import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, type MigrationResult } from 'kysely';
import pg from 'pg';
import { lockDataDir } from './embedded-lock.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import type { Database } from './schema.ts';

export type DatabaseKind = 'postgresql' | 'pglite';

export interface DatabaseHandle {
  db: Kysely<Database>;
  kind: DatabaseKind;
  /** The embedded database itself, for LISTEN; undefined on PostgreSQL. */
  embedded?: PGlite;
}

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  dataDir: string;
  poolSize?: number;
  /** Receives the error of an idle PostgreSQL connection that failed, such as on a server restart. */
  onConnectionError?: (error: Error) => void;
}

const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * Opens PostgreSQL through `pg` when a URL is given, else the embedded PGlite
 * database in `dataDir` (`memory://` keeps it in memory).
 */
export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.databaseUrl !== undefined) {
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolSize ?? 10 });
    // pg emits 'error' on the pool when an idle connection dies. Without a listener, Node.js
    // ends the process. With one, the pool drops that connection and opens a new one.
    pool.on('error', (error) => options.onConnectionError?.(error));
    // The pool listens for errors only on idle connections. One that dies while
    // checked out, between the queries of a transaction, emits 'error' on its
    // client, which without a listener ends the process. Ignoring it here is
    // safe: the next query on that client fails (a 503 for the request), and
    // the pool discards the client when it is released.
    pool.on('connect', (client) => client.on('error', () => {}));
    return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), kind: 'postgresql' };
  }

  const dataDir = options.dataDir === 'memory://' ? undefined : path.resolve(options.dataDir);
  const unlock = dataDir === undefined ? () => {} : lockDataDir(dataDir);

  try {
    // Loaded only when used: the embedded database adds about 35 MB to every process that imports it.
    const { PGlite: EmbeddedDatabase } = await import('@electric-sql/pglite');
    const embedded = await EmbeddedDatabase.create(dataDir);
    return { db: new Kysely<Database>({ dialect: new PGliteDialect(embedded, unlock) }), kind: 'pglite', embedded };
  } catch (error) {
    unlock();
    throw error;
  }
}

/** Applies every pending migration in `migrations/`; throws on the first failure. */
export async function migrateToLatest(db: Kysely<Database>): Promise<MigrationResult[]> {
  const migrator = new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_FOLDER }),
  });

  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((result) => result.status === 'Error');
    const name = failed === undefined ? '' : ` in ${failed.migrationName}`;
    throw new Error(`Migration failed${name}: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
  return results ?? [];
}
