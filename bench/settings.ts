// Settings of `npm run bench`, read from the environment:
//   BENCH_DATABASE_URL  PostgreSQL server to create the bench database on
//                       (default postgres://postgres@127.0.0.1:5432/postgres)
//   BENCH_DURATION      measured seconds per route (default 10)
//   BENCH_WARMUP        warm-up seconds per route, not counted (default 2)
//   BENCH_CONNECTIONS   concurrent connections (default 50)
//   BENCH_CODE_POOL     authorization codes to seed (default 3000 per second of warm-up and run)
//   BENCH_ROUTES        comma-separated route numbers to run, from 1 (default all).
//                       docs/benchmarks.md is rewritten only when all of them run.
//   BENCH_CPU_PROF      folder for a V8 CPU profile of the Speedgate server (default none)
//   BENCH_QUERY_STATS   file for the Speedgate server's query counts and times
//                       (bench/query-stats.ts; default none)
import type { BenchRoute } from './route-types.ts';

/**
 * An estimate of the fastest code exchange rate on current hardware, per
 * second, which sizes the code pool. BENCH_CODE_POOL overrides the size.
 */
const CODE_EXCHANGES_PER_SECOND = 3000;

/** An invalid BENCH_* setting, reported without a stack trace. */
export class SettingsError extends Error {
  override name = 'SettingsError';
}

function readNumber(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;

  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new SettingsError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

/** Reads the BENCH_* settings. Throws SettingsError naming an invalid one. */
export function readSettings() {
  const durationSeconds = readNumber('BENCH_DURATION', 10, 1, 3600);
  const warmupSeconds = readNumber('BENCH_WARMUP', 2, 0, 600);
  const connections = readNumber('BENCH_CONNECTIONS', 50, 1, 1000);
  const codePoolSize = readNumber(
    'BENCH_CODE_POOL',
    (durationSeconds + warmupSeconds) * CODE_EXCHANGES_PER_SECOND,
    connections * 2,
    10_000_000,
  );
  const routeNumbers = (process.env.BENCH_ROUTES ?? '')
    .split(',')
    .filter((entry) => entry.trim() !== '')
    .map(Number);
  const cpuProfileDir = process.env.BENCH_CPU_PROF || undefined;
  const queryStatsFile = process.env.BENCH_QUERY_STATS || undefined;

  return {
    serverUrl: process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
    durationSeconds,
    warmupSeconds,
    connections,
    codePoolSize,
    routeNumbers,
    cpuProfileDir,
    queryStatsFile,
  };
}

export type Settings = ReturnType<typeof readSettings>;

/** Returns the routes that BENCH_ROUTES lists, or all of them when it is unset. */
export function selectRoutes(routes: BenchRoute[], numbers: number[]): BenchRoute[] {
  if (numbers.length === 0) return routes;

  const invalid = numbers.filter(
    (number) => !Number.isInteger(number) || number < 1 || number > routes.length,
  );
  if (invalid.length > 0) {
    const list = routes.map((route, index) => `${index + 1}: ${route.label}`).join('\n');
    throw new SettingsError(
      `BENCH_ROUTES must list route numbers from 1 to ${routes.length}:\n${list}`,
    );
  }
  return routes.filter((_route, index) => numbers.includes(index + 1));
}

/** Returns the command as typed, with the BENCH_* settings that change the load. */
export function commandLine(): string {
  const changed = ['BENCH_DURATION', 'BENCH_WARMUP', 'BENCH_CONNECTIONS', 'BENCH_CODE_POOL'].filter(
    (name) => process.env[name],
  );
  return [...changed.map((name) => `${name}=${process.env[name]}`), 'npm run bench'].join(' ');
}
