// Preloaded into the Speedgate server by `BENCH_QUERY_STATS=<file> npm run bench`:
// counts HTTP requests, times every pg query and every wait for a pooled
// connection, and writes the totals to QUERY_STATS_FILE as JSON when the
// process exits. For profiling only: the wrappers add a little time per query.
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import pg from 'pg';

interface Timing {
  count: number;
  totalMs: number;
  maxMs: number;
}

const file = process.env.QUERY_STATS_FILE || undefined;
const queries = new Map<string, Timing>();
const poolWait: Timing = { count: 0, totalMs: 0, maxMs: 0 };
let requests = 0;
const startedAt = performance.now();
const eventLoopAtStart = performance.eventLoopUtilization();

function record(timing: Timing, ms: number): void {
  timing.count += 1;
  timing.totalMs += ms;
  timing.maxMs = Math.max(timing.maxMs, ms);
}

function timingFor(text: string): Timing {
  // Multi-row inserts differ only in their number of value lists.
  const key = text.replace(/\s+/g, ' ').replace(/(\(\$\d+(, \$\d+)*\)(, )?){2,}/g, '(…rows…)');
  let timing = queries.get(key);
  if (timing === undefined) {
    timing = { count: 0, totalMs: 0, maxMs: 0 };
    queries.set(key, timing);
  }
  return timing;
}

subscribe('http.server.request.start', () => {
  requests += 1;
});

type QueryFunction = (...args: unknown[]) => unknown;
const originalQuery = pg.Client.prototype.query as unknown as QueryFunction;
(pg.Client.prototype as unknown as { query: QueryFunction }).query = function timedQuery(
  this: unknown,
  ...args: unknown[]
) {
  const first = args[0];
  const text =
    typeof first === 'string' ? first : String((first as { text?: string })?.text ?? '(unknown)');
  const start = performance.now();
  const result = originalQuery.apply(this, args);
  if (result instanceof Promise) {
    const timing = timingFor(text);
    result.then(
      () => record(timing, performance.now() - start),
      () => record(timing, performance.now() - start),
    );
  }
  return result;
};

type ConnectFunction = (...args: unknown[]) => unknown;
const originalConnect = pg.Pool.prototype.connect as unknown as ConnectFunction;
(pg.Pool.prototype as unknown as { connect: ConnectFunction }).connect = function timedConnect(
  this: unknown,
  ...args: unknown[]
) {
  const start = performance.now();
  const result = originalConnect.apply(this, args);
  if (result instanceof Promise)
    result.then(
      () => record(poolWait, performance.now() - start),
      () => {},
    );
  return result;
};

process.on('exit', () => {
  if (file === undefined) return;

  const elapsedMs = performance.now() - startedAt;
  const perRequest = (count: number) =>
    requests === 0 ? 0 : Math.round((count / requests) * 100) / 100;
  const rows = [...queries]
    .map(([sql, timing]) => ({
      sql,
      count: timing.count,
      perRequest: perRequest(timing.count),
      meanMs: Math.round((timing.totalMs / timing.count) * 100) / 100,
      maxMs: Math.round(timing.maxMs),
      totalMs: Math.round(timing.totalMs),
    }))
    .sort((left, right) => right.totalMs - left.totalMs);

  const stats = {
    requests,
    elapsedSeconds: Math.round(elapsedMs / 100) / 10,
    eventLoopUtilization:
      Math.round(performance.eventLoopUtilization(eventLoopAtStart).utilization * 1000) / 1000,
    poolWait: {
      ...poolWait,
      perRequest: perRequest(poolWait.count),
      meanMs: Math.round((poolWait.totalMs / Math.max(poolWait.count, 1)) * 100) / 100,
    },
    queries: rows,
  };
  writeFileSync(file, `${JSON.stringify(stats, null, 2)}\n`);
});
