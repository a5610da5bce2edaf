import { AsyncLocalStorage } from 'node:async_hooks';
import type { PGlite } from '@electric-sql/pglite';
import { sql, type Kysely, type Transaction } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';

export const INVALIDATION_CHANNEL = 'speedgate_invalidate';

/**
 * Announces that a cached row changed, to every node. Sent with NOTIFY in
 * the caller's transaction, so nodes hear it only once the change commits.
 * Messages name the row: `grant:<id>`, `client:<id>`, `pat:<token hash>`,
 * `device:<device code hash>`, or `client:*` for all clients.
 */
export async function announceChange(executor: Kysely<Database> | Transaction<Database>, message: string): Promise<void> {
  await sql`select pg_notify(${INVALIDATION_CHANNEL}, ${message})`.execute(executor);
  // The NOTIFY reaches this node's own listener some time after the commit.
  // Applied here as well, the change cannot be served from this node's cache
  // to the next request, even one sent the moment this one returns.
  localApplier.getStore()?.(message);
}

const localApplier = new AsyncLocalStorage<(message: string) => void>();

/** Runs `callback` so that announcements made within it, in any async step, also go to `apply` at once. */
export function withLocalAnnouncements<T>(apply: (message: string) => void, callback: () => T): T {
  return localApplier.run(apply, callback);
}

/** Receives change announcements. `healthy` is false while messages may be missed. */
export interface InvalidationListener {
  readonly healthy: boolean;
  /** `onMessage` gets each message; `onReset` runs whenever messages may have been missed. */
  start(onMessage: (message: string) => void, onReset: () => void): Promise<void>;
  close(): Promise<void>;
}

/** Listens on the embedded database, which only this process uses. */
export class EmbeddedListener implements InvalidationListener {
  readonly #database: PGlite;
  healthy = false;

  constructor(database: PGlite) {
    this.#database = database;
  }

  async start(onMessage: (message: string) => void): Promise<void> {
    await this.#database.listen(INVALIDATION_CHANNEL, onMessage);
    this.healthy = true;
  }

  async close(): Promise<void> {
    this.healthy = false;
  }
}

/** How long to wait before reconnecting a lost listening connection, in milliseconds. */
const RECONNECT_DELAY_MS = 1000;

/**
 * Listens on a dedicated PostgreSQL connection. When it drops, the caches
 * are reset and stay unused (`healthy` false) until it is back, so no node
 * serves a revoked token from its cache because it missed the message.
 */
export class PostgresListener implements InvalidationListener {
  readonly #url: string;
  readonly #onError: (error: Error) => void;
  #client: pg.Client | undefined;
  #closed = false;
  healthy = false;

  constructor(url: string, onError: (error: Error) => void) {
    this.#url = url;
    this.#onError = onError;
  }

  async start(onMessage: (message: string) => void, onReset: () => void): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url });
    this.#client = client;

    client.on('notification', (notification) => {
      if (notification.payload !== undefined) onMessage(notification.payload);
    });
    const lost = (error?: Error) => {
      if (this.#client !== client) return;
      this.healthy = false;
      this.#client = undefined;
      onReset();
      if (error !== undefined) this.#onError(error);
      client.end().catch(() => {});
      if (!this.#closed) setTimeout(() => void this.start(onMessage, onReset).catch(() => lost()), RECONNECT_DELAY_MS).unref();
    };
    client.on('error', lost);
    client.on('end', () => lost());

    await client.connect();
    await client.query(`listen ${INVALIDATION_CHANNEL}`);
    // Anything cached before this point may have missed a message while the connection was down.
    onReset();
    this.healthy = true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.healthy = false;
    const client = this.#client;
    this.#client = undefined;
    await client?.end();
  }
}
