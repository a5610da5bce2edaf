import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Where one test file's server keeps its data: a fresh PostgreSQL database or PGlite folder. */
export interface TestDatabase {
  databaseUrl: string | undefined;
  dataDir: string;
  /** Environment variables that point the bin/ commands at this database. */
  env: Record<string, string>;
  drop(): Promise<void>;
}

/**
 * Creates an empty database for one test file. With DATABASE_URL set, it is
 * a new database on that PostgreSQL server, dropped afterwards; without it,
 * an embedded PGlite database (`memory://`, or a temporary folder when
 * `onDisk` is set so another process can open it).
 */
export async function createTestDatabase(options: { onDisk?: boolean } = {}): Promise<TestDatabase> {
  const serverUrl = process.env.DATABASE_URL;

  if (serverUrl === undefined || serverUrl === '') {
    if (!options.onDisk) {
      return { databaseUrl: undefined, dataDir: 'memory://', env: { DATA_DIR: 'memory://' }, drop: async () => {} };
    }
    const dataDir = mkdtempSync(path.join(tmpdir(), 'speedgate-test-'));
    return {
      databaseUrl: undefined,
      dataDir,
      env: { DATA_DIR: dataDir },
      drop: async () => rmSync(dataDir, { recursive: true, force: true }),
    };
  }

  const name = `speedgate_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();

  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    databaseUrl: url.href,
    dataDir: 'memory://',
    env: { DATABASE_URL: url.href },
    drop: async () => {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}
