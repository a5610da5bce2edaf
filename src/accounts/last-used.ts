import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';

interface Usage {
  at: Date;
  ip: string;
  userAgent: string | null;
}

/** How often buffered "last used" records are written, in milliseconds. */
const FLUSH_INTERVAL_MS = 10_000;

/**
 * Buffers the "last used" time, address and user agent of personal access
 * tokens and writes them in one batch every 10 seconds, so authenticating a
 * request adds no write. A token used many times between flushes costs one
 * update. Records still buffered when the process dies are lost, which only
 * makes "last used" up to 10 seconds stale.
 */
export class LastUsedRecorder {
  readonly #db: Kysely<Database>;
  readonly #pending = new Map<string, Usage>();
  readonly #timer: NodeJS.Timeout;
  readonly #onError: (error: unknown) => void;

  constructor(db: Kysely<Database>, onError: (error: unknown) => void) {
    this.#db = db;
    this.#onError = onError;
    this.#timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  record(tokenId: string, usage: Usage): void {
    this.#pending.set(tokenId, usage);
  }

  async flush(): Promise<void> {
    const batch = [...this.#pending];
    this.#pending.clear();

    for (const [id, usage] of batch) {
      try {
        await this.#db
          .updateTable('personal_access_tokens')
          .set({ last_used_at: usage.at, last_used_ip: usage.ip, last_used_user_agent: usage.userAgent })
          .where('id', '=', id)
          .execute();
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  /** Stops the timer and writes what is buffered. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
