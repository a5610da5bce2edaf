/**
 * Groups concurrent calls into batches, so that many requests share one
 * statement and one commit. A call starts a batch at once when fewer than
 * `concurrency` batches are running, and otherwise joins the next one, so a
 * quiet server adds no wait and a busy one sends fewer, larger statements.
 *
 * NOTE: a batch that waits, on a row lock or for a pool connection, delays
 * every call queued behind it, and no statement timeout bounds that wait.
 */
export class Batcher<Item, Result> {
  readonly #execute: (items: Item[]) => Promise<Result[]>;
  readonly #maxSize: number;
  readonly #concurrency: number;
  #waiting: { item: Item; resolve: (result: Result) => void; reject: (error: unknown) => void }[] = [];
  #running = 0;

  /** `execute` returns one result per item, in the order of `items`. */
  constructor(execute: (items: Item[]) => Promise<Result[]>, options: { maxSize: number; concurrency: number }) {
    this.#execute = execute;
    this.#maxSize = options.maxSize;
    this.#concurrency = options.concurrency;
  }

  /** Adds `item` to a batch and resolves with its result, or rejects with the batch's error. */
  run(item: Item): Promise<Result> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      if (this.#running < this.#concurrency) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running++;
    while (this.#waiting.length > 0) {
      const batch = this.#waiting.splice(0, this.#maxSize);
      try {
        const results = await this.#execute(batch.map((entry) => entry.item));
        batch.forEach((entry, index) => entry.resolve(results[index] as Result));
      } catch (error) {
        for (const entry of batch) entry.reject(error);
      }
    }
    this.#running--;
  }
}

/** Returns the first of the items that share each key, in their order. */
export function firstOfEachKey<Item>(items: Item[], key: (item: Item) => string): Item[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const value = key(item);
    if (seen.has(value)) return false;
    seen.add(value);
    return true;
  });
}

/**
 * Returns a function that gives each database handle its own value, made by
 * `create` on first use, so servers that share a process never share batches.
 */
export function perDatabase<Context extends { db: object }, Value>(create: (context: Context) => Value): (context: Context) => Value {
  const values = new WeakMap<object, Value>();
  return (context) => {
    let value = values.get(context.db);
    if (value === undefined) {
      value = create(context);
      values.set(context.db, value);
    }
    return value;
  };
}
