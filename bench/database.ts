import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A throwaway database on the benchmark's PostgreSQL server. */
export interface BenchDatabase {
  name: string;
  url: string;
  /** Drops the database and ends any connection still open to it. Later calls do nothing. */
  drop(): Promise<void>;
}

async function runOnServer(serverUrl: string, statement: string): Promise<string> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const result = await client.query(statement);
    return result.rows[0] === undefined ? '' : String(Object.values(result.rows[0])[0]);
  } finally {
    await client.end();
  }
}

/** Creates an empty database named `speedgate_bench_<random hex>` on the server at `serverUrl`. */
export async function createBenchDatabase(serverUrl: string): Promise<BenchDatabase> {
  const name = `speedgate_bench_${randomBytes(6).toString('hex')}`;
  await runOnServer(serverUrl, `create database ${name}`);

  const url = new URL(serverUrl);
  url.pathname = `/${name}`;

  let dropping: Promise<void> | undefined;
  const drop = () => {
    dropping ??= runOnServer(serverUrl, `drop database if exists ${name} with (force)`).then(
      () => {},
    );
    return dropping;
  };
  return { name, url: url.href, drop };
}

/** Returns the server's version, such as `15.20 (Debian 15.20-0+deb12u1)`. */
export async function serverVersion(serverUrl: string): Promise<string> {
  return runOnServer(serverUrl, 'show server_version');
}
