import pg from 'pg';
import t from 'tap';
import { startServer } from './helpers/server.ts';
import { createTestClient, postForm } from './helpers/tokens.ts';

const serverUrl = process.env.DATABASE_URL;

t.test('server survives terminated connections', { skip: serverUrl ? false : 'needs DATABASE_URL' }, async (t) => {
  const server = await startServer(t);
  const { client } = await createTestClient(server);
  const before = await postForm(`${server.url}/o/device-authorization/`, { client_id: client.id });
  t.equal(before.status, 200);

  // What a PostgreSQL restart or failover does to the pool's idle connections.
  const databaseName = new URL(server.database.databaseUrl ?? '').pathname.slice(1);
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  const terminated = await admin.query(
    'select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
    [databaseName],
  );
  t.ok((terminated.rowCount ?? 0) > 0, 'the server had connections to end');

  // A backend leaves pg_stat_activity after sending its termination message, so once none is
  // left, one turn of the event loop lets the pool read every message.
  const remaining = 'select count(*)::int as count from pg_stat_activity where datname = $1';
  while ((await admin.query(remaining, [databaseName])).rows[0].count > 0) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  await admin.end();
  await new Promise((resolve) => setTimeout(resolve, 0));

  const after = await postForm(`${server.url}/o/device-authorization/`, { client_id: client.id });
  t.equal(after.status, 200, 'the next request gets a new connection');
});
