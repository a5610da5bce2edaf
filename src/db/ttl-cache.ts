/**
 * A bounded in-memory map whose entries expire. When full, the oldest entry
 * is dropped. Used only for data whose changes are announced through the
 * invalidation channel, so a stale entry lives until the announcement at most.
 */
export class TtlCache<K, V> {
  readonly #entries = new Map<K, { value: V; expiresAt: number }>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;

  constructor(maxEntries: number, ttlMs: number) {
    this.#maxEntries = maxEntries;
    this.#ttlMs = ttlMs;
  }

  get(key: K): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** Stores `value`, expiring after the cache's lifetime or at `expiresAt` (epoch milliseconds), whichever is first. */
  set(key: K, value: V, expiresAt?: number): void {
    if (this.#entries.size >= this.#maxEntries && !this.#entries.has(key)) {
      this.#entries.delete(this.#entries.keys().next().value as K);
    }
    const limit = Date.now() + this.#ttlMs;
    this.#entries.set(key, { value, expiresAt: expiresAt === undefined ? limit : Math.min(limit, expiresAt) });
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }

  /** Deletes every entry whose value matches `predicate`. */
  deleteWhere(predicate: (value: V) => boolean): void {
    for (const [key, entry] of this.#entries) {
      if (predicate(entry.value)) this.#entries.delete(key);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}
