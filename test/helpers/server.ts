import { createServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

/** A clock that tests move forward instead of sleeping. */
export class TestClock {
  offsetMs = 0;

  now = (): Date => new Date(Date.now() + this.offsetMs);

  advance(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
}

export interface TestServer {
  app: FastifyInstance;
  url: string;
  clock: TestClock;
  database: TestDatabase;
  config: Config;
}

/** Finds a free loopback port, so the issuer can name it before the server starts. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

export interface StartOptions {
  env?: Record<string, string>;
  database?: TestDatabase;
}

/**
 * Starts a Speedgate server on a loopback port with its own empty database,
 * closed and dropped when the test `t` ends.
 */
export async function startServer(t: Test, options: StartOptions = {}): Promise<TestServer> {
  const database = options.database ?? (await createTestDatabase());
  const port = await freePort();
  const clock = new TestClock();

  const config = loadConfig(
    {
      PORT: String(port),
      ISSUER: `http://127.0.0.1:${port}`,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      // Every test request comes from 127.0.0.1: tests of these limits set them low themselves.
      OAUTH_FAILURE_LIMIT: '100000',
      DCR_RATE_LIMIT: '100000',
      SIGNUP_RATE_LIMIT: '100000',
      ...database.env,
      ...options.env,
    },
    { now: clock.now },
  );

  const app = await buildApp(config);
  await app.listen({ port, host: '127.0.0.1' });

  t.teardown(async () => {
    await app.close();
    if (options.database === undefined) await database.drop();
  });
  return { app, url: config.issuer, clock, database, config };
}
