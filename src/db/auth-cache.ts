import type { JWTPayload } from 'jose';
import type { Client, Grant, PersonalAccessToken } from './schema.ts';
import { withLocalAnnouncements, type InvalidationListener } from './invalidation.ts';
import { TtlCache } from './ttl-cache.ts';

/** The part of a grant that authenticating a request needs. */
export interface GrantStatus {
  revokedAt: Date | null;
  userId: string | null;
  clientId: string;
}

/** The poll state of a pending device authorization, kept by the node that handles its polls. */
export interface PendingDevicePoll {
  clientId: string;
  /** When the device code expires, in epoch milliseconds of the server clock. */
  expiresAt: number;
  intervalSeconds: number;
  /** The last poll this node handled, in epoch milliseconds of the server clock. */
  lastPolledAt: number;
}

const MINUTE_MS = 60_000;

/**
 * In-memory caches for the hot paths: clients, grant status, personal
 * access tokens, verified access-token claims and pending device codes. Revocations reach every
 * node: each change is announced through PostgreSQL NOTIFY, and while the listening connection is down the caches of rows
 * that can be revoked are emptied and bypassed. Verified claims need no
 * announcement: a token's signature never changes, and its grant is checked
 * on every use.
 *
 * NOTE: the node that makes a change applies it at once. Other nodes apply it
 * when the NOTIFY arrives, shortly after the commit, and can serve the old
 * entry to a request that reaches them in between.
 */
export class AuthCache {
  readonly #listener: InvalidationListener;
  readonly clients = new TtlCache<string, Client>(10_000, MINUTE_MS);
  readonly grants = new TtlCache<string, GrantStatus>(100_000, MINUTE_MS);
  readonly clientGrants = new TtlCache<string, Grant>(10_000, MINUTE_MS);
  readonly pats = new TtlCache<string, PersonalAccessToken>(100_000, MINUTE_MS);
  readonly accessTokens = new TtlCache<string, JWTPayload>(100_000, 10 * MINUTE_MS);
  /** Pending device codes by device-code hash; the user's decision is announced as `device:<hash>`. */
  readonly devicePolls = new TtlCache<string, PendingDevicePoll>(100_000, 30 * MINUTE_MS);

  #generation = 0;

  constructor(listener: InvalidationListener) {
    this.#listener = listener;
  }

  /**
   * Returns a stamp to take before reading a row from the database. `store`
   * with that stamp keeps the row only if no change was announced since, so
   * a read that raced with a revocation never lands in the cache.
   */
  stamp(): number {
    return this.#generation;
  }

  store<V>(cache: TtlCache<string, V>, key: string, value: V, stamp: number, expiresAt?: number): void {
    if (this.enabled && stamp === this.#generation) cache.set(key, value, expiresAt);
  }

  /** Whether cached clients, grants and tokens may be used: false while announcements may be missed. */
  get enabled(): boolean {
    return this.#listener.healthy;
  }

  /**
   * Runs `callback`, such as a request, so that changes it announces apply to
   * this cache as they are announced, before the commit. The NOTIFY that
   * follows applies them again, which drops a read that raced in between.
   */
  withLocalAnnouncements<T>(callback: () => T): T {
    return withLocalAnnouncements((message) => this.#apply(message), callback);
  }

  async start(): Promise<void> {
    await this.#listener.start(
      (message) => this.#apply(message),
      () => this.#reset(),
    );
  }

  async close(): Promise<void> {
    await this.#listener.close();
  }

  #apply(message: string): void {
    this.#generation++;
    const separator = message.indexOf(':');
    const kind = message.slice(0, separator);
    const id = message.slice(separator + 1);

    if (kind === 'grant') {
      this.grants.delete(id);
      this.clientGrants.deleteWhere((grant) => grant.id === id);
    } else if (kind === 'client' && id === '*') {
      this.#reset();
    } else if (kind === 'client') {
      this.clients.delete(id);
      // Deleting a client deletes its grants and device codes by cascade, with no announcement of their own.
      this.grants.deleteWhere((grant) => grant.clientId === id);
      this.clientGrants.deleteWhere((grant) => grant.client_id === id);
      this.devicePolls.deleteWhere((poll) => poll.clientId === id);
    } else if (kind === 'pat') {
      this.pats.delete(id);
    } else if (kind === 'device') {
      this.devicePolls.delete(id);
    }
  }

  #reset(): void {
    this.#generation++;
    this.clients.clear();
    this.grants.clear();
    this.clientGrants.clear();
    this.pats.clear();
    this.devicePolls.clear();
  }
}
