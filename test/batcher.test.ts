import t from 'tap';
import { Batcher, firstOfEachKey, perDatabase } from '../src/db/batcher.ts';

/** A batch function that records each batch and resolves when `release` is called. */
function recordingBatcher(options: { maxSize: number; concurrency: number }) {
  const batches: number[][] = [];
  const pending: (() => void)[] = [];
  const batcher = new Batcher<number, number>(
    (items) =>
      new Promise((resolve) => {
        batches.push(items);
        pending.push(() => resolve(items.map((item) => item * 10)));
      }),
    options,
  );
  const releaseAll = () => {
    for (const release of pending.splice(0)) release();
  };
  return { batcher, batches, releaseAll };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

t.test('first call runs alone', async (t) => {
  const { batcher, batches, releaseAll } = recordingBatcher({ maxSize: 10, concurrency: 1 });
  const result = batcher.run(1);
  await tick();
  t.strictSame(batches, [[1]], 'the call did not wait for others');

  releaseAll();
  t.equal(await result, 10);
});

t.test('calls during a batch join the next', async (t) => {
  const { batcher, batches, releaseAll } = recordingBatcher({ maxSize: 10, concurrency: 1 });
  const first = batcher.run(1);
  const rest = [2, 3, 4].map((item) => batcher.run(item));
  await tick();
  t.strictSame(batches, [[1]], 'one batch runs at a time');

  releaseAll();
  await first;
  await tick();
  t.strictSame(batches, [[1], [2, 3, 4]], 'the waiting calls form one batch');

  releaseAll();
  t.strictSame(await Promise.all(rest), [20, 30, 40], 'each call gets its own result');
});

t.test('batches stop at the maximum size', async (t) => {
  const { batcher, batches, releaseAll } = recordingBatcher({ maxSize: 2, concurrency: 1 });
  const all = [1, 2, 3, 4, 5].map((item) => batcher.run(item));
  for (let round = 0; round < 4; round++) {
    await tick();
    releaseAll();
  }
  t.strictSame(await Promise.all(all), [10, 20, 30, 40, 50]);
  t.strictSame(batches, [[1], [2, 3], [4, 5]]);
});

t.test('concurrency allows parallel batches', async (t) => {
  const { batcher, batches, releaseAll } = recordingBatcher({ maxSize: 10, concurrency: 2 });
  const all = [1, 2, 3].map((item) => batcher.run(item));
  await tick();
  t.strictSame(batches, [[1], [2]], 'a second batch starts while the first runs');

  releaseAll();
  await tick();
  t.strictSame(batches, [[1], [2], [3]], 'the third call waits for a free slot');
  releaseAll();
  t.strictSame(await Promise.all(all), [10, 20, 30]);
});

t.test('failed batch rejects only its calls', async (t) => {
  let calls = 0;
  const batcher = new Batcher<number, number>(
    async (items) => {
      calls++;
      if (calls === 1) throw new Error('statement failed');
      return items;
    },
    { maxSize: 10, concurrency: 1 },
  );
  const failing = batcher.run(1);
  const later = batcher.run(2);

  await t.rejects(failing, { message: 'statement failed' });
  t.equal(await later, 2, 'the next batch still runs');
});

t.test('first of each key', async (t) => {
  const items = [
    { key: 'a', order: 1 },
    { key: 'b', order: 2 },
    { key: 'a', order: 3 },
  ];
  t.strictSame(firstOfEachKey(items, (item) => item.key), [items[0], items[1]]);
  t.strictSame(firstOfEachKey([], (item: { key: string }) => item.key), []);
});

t.test('one value per database', async (t) => {
  let created = 0;
  const valueFor = perDatabase((context: { db: object; name: string }) => ({ number: ++created, name: context.name }));
  const first = { db: {}, name: 'first' };
  const second = { db: {}, name: 'second' };

  t.equal(valueFor(first), valueFor(first), 'the same database gets the same value');
  t.equal(valueFor({ db: first.db, name: 'other context' }).name, 'first', 'the value follows the database, not the context');
  t.not(valueFor(second), valueFor(first), 'another database gets its own value');
  t.equal(created, 2);
});
