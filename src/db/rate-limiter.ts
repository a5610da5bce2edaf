import { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import { countAttempt, isLimited, resetAttempts, type RateLimitResult } from './rate-limits.ts';
import type { Database } from './schema.ts';

/**
 * Fixed-window attempt counters shared by every node: in PostgreSQL by
 * default, in Redis when `REDIS_URL` is set.
 */
export interface RateLimiter {
  /** Counts one attempt against `key`; allowed while at most `limit` attempts fall in the window. */
  hit(key: string, limit: number, windowSeconds: number): Promise<RateLimitResult>;
  /** Tells whether `key` has reached `limit` in its current window, without counting. */
  isLimited(key: string, limit: number, windowSeconds: number): Promise<boolean>;
  /** Clears the count of `key` in its current window. */
  reset(key: string, windowSeconds: number): Promise<void>;
  close(): Promise<void>;
}

export class PostgresRateLimiter implements RateLimiter {
  readonly #db: Kysely<Database>;
  readonly #now: () => Date;

  constructor(db: Kysely<Database>, now: () => Date) {
    this.#db = db;
    this.#now = now;
  }

  hit(key: string, limit: number, windowSeconds: number): Promise<RateLimitResult> {
    return countAttempt(this.#db, key, limit, windowSeconds, this.#now());
  }

  isLimited(key: string, limit: number): Promise<boolean> {
    return isLimited(this.#db, key, limit, this.#now());
  }

  reset(key: string): Promise<void> {
    return resetAttempts(this.#db, key);
  }

  async close(): Promise<void> {}
}

/**
 * Counters in Redis. Windows are aligned to the application clock, so the
 * key names the window and expires with it: INCR and PEXPIRE in one MULTI.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #redis: Redis;
  readonly #now: () => Date;

  constructor(url: string, now: () => Date) {
    this.#redis = new Redis(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false });
    this.#now = now;
  }

  #window(key: string, windowSeconds: number) {
    const nowMs = this.#now().getTime();
    const windowMs = windowSeconds * 1000;
    const start = Math.floor(nowMs / windowMs) * windowMs;
    return { name: `speedgate:rate:${key}:${start}`, endsInMs: start + windowMs - nowMs };
  }

  async hit(key: string, limit: number, windowSeconds: number): Promise<RateLimitResult> {
    const window = this.#window(key, windowSeconds);
    const results = await this.#redis.multi().incr(window.name).pexpire(window.name, window.endsInMs + 1000).exec();
    const count = Number(results?.[0]?.[1] ?? 0);
    return { allowed: count <= limit, retryAfterSeconds: Math.max(1, Math.ceil(window.endsInMs / 1000)) };
  }

  async isLimited(key: string, limit: number, windowSeconds: number): Promise<boolean> {
    const count = Number((await this.#redis.get(this.#window(key, windowSeconds).name)) ?? 0);
    return count >= limit;
  }

  async reset(key: string, windowSeconds: number): Promise<void> {
    await this.#redis.del(this.#window(key, windowSeconds).name);
  }

  async close(): Promise<void> {
    await this.#redis.quit();
  }
}
