import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.ts';

export interface RateLimitResult {
  allowed: boolean;
  /** Seconds until the window ends, for a `Retry-After` header. */
  retryAfterSeconds: number;
}

/**
 * Counts one attempt against `key` in a fixed window of `windowSeconds`, in
 * one statement, so every node shares the count. Allows at most `limit`
 * attempts per window.
 */
export async function countAttempt(
  db: Kysely<Database>,
  key: string,
  limit: number,
  windowSeconds: number,
  now: Date,
): Promise<RateLimitResult> {
  const windowEnd = new Date(now.getTime() + windowSeconds * 1000);

  const row = await db
    .insertInto('rate_limits')
    .values({ key, count: 1, window_ends_at: windowEnd })
    .onConflict((conflict) =>
      conflict.column('key').doUpdateSet({
        count: sql`case when rate_limits.window_ends_at <= ${now} then 1 else rate_limits.count + 1 end`,
        window_ends_at: sql`case when rate_limits.window_ends_at <= ${now} then excluded.window_ends_at else rate_limits.window_ends_at end`,
      }),
    )
    .returning(['count', 'window_ends_at'])
    .executeTakeFirstOrThrow();

  const retryAfterSeconds = Math.max(1, Math.ceil((row.window_ends_at.getTime() - now.getTime()) / 1000));
  return { allowed: row.count <= limit, retryAfterSeconds };
}

/** Tells whether `key` is over `limit` without counting an attempt. */
export async function isLimited(db: Kysely<Database>, key: string, limit: number, now: Date): Promise<boolean> {
  const row = await db
    .selectFrom('rate_limits')
    .select('count')
    .where('key', '=', key)
    .where('window_ends_at', '>', now)
    .executeTakeFirst();
  return row !== undefined && row.count >= limit;
}

/** Clears the count of `key`, such as a login's failed attempts once the password is right. */
export async function resetAttempts(db: Kysely<Database>, key: string): Promise<void> {
  await db.deleteFrom('rate_limits').where('key', '=', key).execute();
}
