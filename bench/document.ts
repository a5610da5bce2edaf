import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { MAX_P99_MS, MAX_RSS_BYTES } from './report.ts';

/** The hardware and software a run measured on. */
export interface Machine {
  cpuModel: string;
  /** Logical processors listed in /proc/cpuinfo. */
  cores: number;
  memoryBytes: number;
  nodeVersion: string;
  postgresVersion: string;
}

/** Reads the CPU model, core count and memory from /proc, and records `postgresVersion`. */
export function describeMachine(postgresVersion: string): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const memoryKb = Number(/^MemTotal:\s+(\d+) kB$/m.exec(meminfo)?.[1] ?? 0);

  return {
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ?? 'unknown CPU',
    cores: cpuinfo.match(/^processor\s*:/gm)?.length ?? 0,
    memoryBytes: memoryKb * 1024,
    nodeVersion: process.version,
    postgresVersion,
  };
}

/** Returns the one-minute load average from /proc/loadavg, rounded to two decimals. */
export function loadAverage(): number {
  return Math.round(loadavg()[0] * 100) / 100;
}

export interface RunDescription {
  date: Date;
  machine: Machine;
  command: string;
  connections: number;
  durationSeconds: number;
  warmupSeconds: number;
  loadAtStart: number;
  loadAtEnd: number;
  /** The Speedgate server's RSS once seeded, before any load, in bytes. */
  idleRssBytes: number;
  table: string;
  summary: string;
  notes: string;
}

// Only the load before the run is checked: the load at the end includes the run's own processes.
function loadWarning(run: RunDescription): string {
  if (run.loadAtStart < run.machine.cores / 2) return '';
  return (
    `\n**The machine was busy:** the load average was ${run.loadAtStart} on ${run.machine.cores} ` +
    'cores when the run started, so other processes took CPU time from the servers, ' +
    'PostgreSQL and the load generator. Rerun on an idle machine before comparing these numbers.\n'
  );
}

/** Renders docs/benchmarks.md for one run. */
export function renderDocument(run: RunDescription): string {
  const { machine } = run;
  const gib = (machine.memoryBytes / 2 ** 30).toFixed(1);
  return `# Benchmarks

\`npm run bench\` (\`bench/run.ts\`) measures Speedgate's busiest endpoints against a minimal
Fastify server on the same machine, and rewrites this page with its results. Each run creates
a database \`speedgate_bench_<random>\` on the PostgreSQL server at \`BENCH_DATABASE_URL\`
(default \`postgres://postgres@127.0.0.1:5432/postgres\`) and drops it at the end.

## Latest run

- Date: ${run.date.toISOString()}
- Machine: ${machine.cpuModel}, ${machine.cores} logical cores, ${gib} GiB memory
- Node.js ${machine.nodeVersion}, PostgreSQL ${machine.postgresVersion}
- Command: \`${run.command}\`
- Load: ${run.connections} connections; per route ${run.warmupSeconds} s warm-up, then ${run.durationSeconds} s measured
- One-minute load average: ${run.loadAtStart} at the start, ${run.loadAtEnd} at the end (which includes this run)
- Speedgate server RSS after start-up and seeding: ${(run.idleRssBytes / 1_000_000).toFixed(0)} MB
${loadWarning(run)}
${run.table}

${run.summary}

Targets: requests/s as a ratio of the one-query baseline as in the Target column,
p99 latency under ${MAX_P99_MS} ms on every Speedgate route, Speedgate's peak RSS under
${MAX_RSS_BYTES / 1_000_000} MB, and no unexpected responses. MB is 10^6 bytes.

### Per route

${run.notes}

## What limits the routes that miss their targets

These findings come from profiling runs of this benchmark on a 2-core virtual machine
(\`BENCH_CPU_PROF\`, \`BENCH_QUERY_STATS\`, and samples of \`pg_stat_activity\`). The
ratios above move by about 0.05 from run to run: the one-query baseline alone measured
11,800 to 13,400 requests/s on an idle machine.

- **Code exchange and refresh** must each commit a durable write: a consumed code, or a
  rotated token and its successor. With one transaction per request, PostgreSQL's backends
  spent most of their time waiting on the WAL write lock and WAL sync, and the routes ran at
  about 1,900 and 1,300 requests/s. Concurrent requests now share one statement and one
  commit (\`src/db/batcher.ts\`), which raised them to about 4,500 and 3,100. Two batches in
  flight at once measured slower than one. A refresh needs a read before it can sign (the
  access token names the authorization's user), so it takes two batched statements where a
  code exchange takes one.
- **\`/api/v1/me/\`** runs the same indexed query as the baseline, after bearer parsing,
  cached token and grant checks, the scope check and the security headers. In its CPU
  profile the event loop is idle about a fifth of the time, waiting on the pool, and
  spends about two fifths of its samples writing to PostgreSQL's socket; the route's own
  JavaScript is most of the rest. It measures 0.6 to 0.7 of the baseline.

## Running it

\`npm run bench\` takes about two and a half minutes with the defaults. Settings, all optional:

| variable | what it sets | default |
| --- | --- | --- |
| \`BENCH_DATABASE_URL\` | PostgreSQL server on which the bench database is created | \`postgres://postgres@127.0.0.1:5432/postgres\` |
| \`BENCH_DURATION\` | measured seconds per route | 10 |
| \`BENCH_WARMUP\` | warm-up seconds per route, not counted | 2 |
| \`BENCH_CONNECTIONS\` | concurrent connections | 50 |
| \`BENCH_CODE_POOL\` | authorization codes seeded for the code exchange | 3000 per second of warm-up and run |
| \`BENCH_ROUTES\` | comma-separated route numbers (table order, from 1); this page is rewritten only when all run | all |
| \`BENCH_CPU_PROF\` | folder for a V8 CPU profile (\`--cpu-prof\`) of the Speedgate server | none |
| \`BENCH_QUERY_STATS\` | JSON file of the Speedgate server's requests, pg queries per request and their times, and pool waits (\`bench/query-stats.ts\`) | none |

## How the numbers are taken

- The Speedgate server (\`node --max-semi-space-size=4 --import tsx src/server.ts\`, as
  \`npm start\` runs it, with \`NODE_ENV=production\` and \`LOG_LEVEL=warn\`) and the baseline server (\`bench/baseline-server.ts\`) each run in their
  own child process on a loopback port; the load generator (autocannon) runs in the parent.
  All three, and PostgreSQL, share the machine's cores.
- Requests/s counts every response from the first request to the last response; p50 and p99
  are exact percentiles over every response of the measured run. Warm-up responses are not
  counted.
- Peak RSS is the highest \`VmRSS\` in \`/proc/<pid>/status\` of the server process, sampled
  every 200 ms during the warm-up and the run. It leaves out the esbuild service process that
  tsx starts for its transforms (about 11 MB on Node.js 20 with tsx 4).
- The baselines: \`GET /baseline/json\` returns a constant object, and \`GET /baseline/query\`
  runs \`select id, email from users where id = $1\` through \`pg\` with as many pooled
  connections as Speedgate opens (\`DATABASE_POOL_SIZE\`, 10 by default).
- \`/api/v1/me/\` is called with an access token that the server issued through the device flow,
  and with a personal access token. Introspection sends that access token with the
  confidential client's \`client_secret_basic\` credentials, as does client_credentials.
- Device polling takes pending device authorizations from a queue of twice as many as there
  are connections, so each is polled by one connection at a time. Polling faster than the
  interval gets a 400 \`slow_down\`, which counts as expected, as does
  \`authorization_pending\`. Any other response counts as unexpected.
- Refresh: each connection rotates refresh token chains, one authorization each, sending the
  successor returned by the previous response.
- Code exchange: each request redeems a different seeded authorization code with its PKCE
  verifier, for a public client. The pool is sized for the warm-up and the run; when it runs
  out first, the run stops early and the per-route notes say so.
`;
}
