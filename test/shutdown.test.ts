import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { createUser } from '../src/accounts/users.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { PASSWORD } from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { freePort } from './helpers/server.ts';
import { basicAuthorization } from './helpers/tokens.ts';

/** Requests with this header wait at the start of their handling until the test releases them. */
const HOLD_HEADER = 'x-test-hold';

interface HeldServer {
  app: FastifyInstance;
  url: string;
  port: number;
  /** Resolves once `count` held requests have arrived. */
  arrivals(count: number): Promise<void>;
  release(): void;
}

/**
 * Starts a server whose requests marked with HOLD_HEADER stop in an
 * onRequest hook until `release` is called, so the test can close the
 * server while they are certainly in flight. The test closes it.
 */
async function startHeldServer(database: TestDatabase): Promise<HeldServer> {
  const port = await freePort();
  const config = loadConfig({ PORT: String(port), ISSUER: `http://127.0.0.1:${port}`, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ...database.env });
  const app = await buildApp(config);

  let arrived = 0;
  const waiters: { count: number; resolve: () => void }[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  app.addHook('onRequest', async (request) => {
    if (request.headers[HOLD_HEADER] === undefined) return;
    arrived += 1;
    for (const waiter of waiters.filter((entry) => entry.count <= arrived)) waiter.resolve();
    await gate;
  });
  await app.listen({ port, host: '127.0.0.1' });

  const arrivals = (count: number) =>
    new Promise<void>((resolve) => {
      if (arrived >= count) resolve();
      else waiters.push({ count, resolve });
    });
  return { app, url: config.issuer, port, arrivals, release };
}

/**
 * How long close() may take once the held requests are released: src/server.ts
 * gives a graceful shutdown 10 seconds before it exits anyway.
 */
const CLOSE_LIMIT_MS = 10_000;

/** Waits for `closing` and returns how long it took, or Infinity after twice the limit. */
async function timeClose(closing: Promise<unknown>): Promise<number> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, 2 * CLOSE_LIMIT_MS)));
  const finished = await Promise.race([closing.then(() => true), timeout.then(() => false)]);
  clearTimeout(timer);
  return finished ? performance.now() - started : Infinity;
}

/** Resolves with the error code of a fresh TCP connection to `port`, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Waits until the server stops listening, which close() starts at once but finishes a few ticks later. */
async function waitUntilNotListening(app: FastifyInstance): Promise<void> {
  for (let turn = 0; turn < 1000 && app.server.listening; turn++) await new Promise((resolve) => setImmediate(resolve));
}

t.test('in-flight login completes on close', async (t) => {
  // On disk, so the test can open the database again after the server closed it.
  const database = await createTestDatabase({ onDisk: true });
  t.teardown(() => database.drop());
  const server = await startHeldServer(database);
  let closed = false;
  t.teardown(async () => {
    if (!closed) await server.app.close();
  });

  const email = `shutdown-${Date.now()}@example.com`;
  const user = await createUser(server.app.speedgate.db, { email, password: PASSWORD }, new Date());
  const browser = new BrowserSession(server.url);
  const page = await browser.page('/accounts/login/');
  const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');

  // The login runs scrypt and writes a session and an audit event after it is released.
  const login = fetch(`${server.url}/accounts/login/`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, [HOLD_HEADER]: '1' },
    body: new URLSearchParams({ csrf_token: page.csrfToken, email, password: PASSWORD }).toString(),
    redirect: 'manual',
  });
  await server.arrivals(1);

  const closing = server.app.close();
  await waitUntilNotListening(server.app);
  t.equal(await tryConnect(server.port), 'ECONNREFUSED', 'a new connection is refused once closing has begun');

  server.release();
  const closeTime = timeClose(closing);
  const response = await login;
  await response.arrayBuffer();
  t.equal(response.status, 303, 'the in-flight login gets its normal answer');
  t.equal(response.headers.get('location'), '/');
  t.match(response.headers.getSetCookie().join('\n'), /^sg_session=/m, 'with its session cookie');
  const closeMs = await closeTime;
  t.ok(closeMs < CLOSE_LIMIT_MS, `close() finishes without waiting for the keep-alive connection (${Math.round(closeMs)} ms)`);
  closed = true;
  t.equal(await tryConnect(server.port), 'ECONNREFUSED', 'the port stays closed');

  const { db } = await openDatabase(database);
  try {
    const sessions = await db.selectFrom('sessions').select('user_id').where('user_id', '=', user.id).execute();
    t.equal(sessions.length, 1, 'the session the login created was stored');
    const events = await db.selectFrom('audit_events').select('event').where('user_id', '=', user.id).execute();
    t.strictSame(events.map((event) => event.event), ['login_succeeded'], 'the buffered audit event was written on close');
  } finally {
    await db.destroy();
  }
});

t.test('in-flight token requests complete on close', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const server = await startHeldServer(database);
  let closed = false;
  t.teardown(async () => {
    if (!closed) await server.app.close();
  });

  const { db, scopes } = server.app.speedgate;
  const service = await registerClient(db, scopes, { name: 'Shutdown service', grantTypes: ['client_credentials'], confidential: true, registrationType: 'operator' }, new Date());
  const headers = {
    'content-type': 'application/x-www-form-urlencoded',
    authorization: basicAuthorization(service.client.id, service.clientSecret ?? ''),
    [HOLD_HEADER]: '1',
  };
  const requests = Array.from({ length: 5 }, () => fetch(`${server.url}/o/token/`, { method: 'POST', headers, body: 'grant_type=client_credentials' }));
  await server.arrivals(5);

  const closing = server.app.close();
  await waitUntilNotListening(server.app);
  t.equal(await tryConnect(server.port), 'ECONNREFUSED', 'a new connection is refused once closing has begun');

  server.release();
  const closeTime = timeClose(closing);
  const responses = await Promise.all(requests);
  const bodies = await Promise.all(responses.map((response) => response.json() as Promise<Record<string, unknown>>));
  t.strictSame(responses.map((response) => response.status), [200, 200, 200, 200, 200], 'every in-flight token request succeeds');
  t.strictSame(bodies.map((body) => body.token_type), ['Bearer', 'Bearer', 'Bearer', 'Bearer', 'Bearer']);
  const closeMs = await closeTime;
  t.ok(closeMs < CLOSE_LIMIT_MS, `close() finishes without waiting for keep-alive connections (${Math.round(closeMs)} ms)`);
  closed = true;
});
