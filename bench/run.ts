// Measures Speedgate's busiest endpoints under load against a minimal Fastify
// baseline, prints the results and rewrites docs/benchmarks.md. bench/settings.ts
// lists the BENCH_* environment variables that change the run.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { ScopeRegistry } from '../src/oauth/scopes.ts';
import { Cleanup } from './cleanup.ts';
import { createBenchDatabase, serverVersion } from './database.ts';
import { describeMachine, loadAverage, renderDocument } from './document.ts';
import { runPhase, stopRunningPhase } from './measure.ts';
import { ROOT, freePort, readRss, startChild, type ChildServer } from './processes.ts';
import { formatNotes, formatSummary, formatTable, judge, type RouteResult } from './report.ts';
import type { BenchRoute } from './route-types.ts';
import { buildRoutes } from './routes.ts';
import { seedFixtures } from './seed.ts';
import {
  SettingsError,
  commandLine,
  readSettings,
  selectRoutes,
  type Settings,
} from './settings.ts';

async function measureRoute(
  route: BenchRoute,
  server: ChildServer,
  settings: Settings,
): Promise<RouteResult> {
  process.stderr.write(`${route.label}: `);
  await route.prepare?.();

  let warmupPeak = 0;
  if (settings.warmupSeconds > 0) {
    const warmup = await runPhase(
      route,
      server.url,
      settings.connections,
      settings.warmupSeconds,
      server.pid,
    );
    warmupPeak = warmup.peakRssBytes;
  }
  const run = await runPhase(
    route,
    server.url,
    settings.connections,
    settings.durationSeconds,
    server.pid,
  );

  process.stderr.write(
    `${run.requestsPerSecond.toFixed(0)} requests/s, p99 ${run.p99Ms.toFixed(1)} ms\n`,
  );
  return { route, run, peakRssBytes: Math.max(warmupPeak, run.peakRssBytes) };
}

/** The V8 flags that `npm start` gives the server in package.json, so the bench measures the same process. */
const SERVER_FLAGS = ['--max-semi-space-size=4'];

function profilingFlags(settings: Settings): string[] {
  const flags: string[] = [...SERVER_FLAGS];
  if (settings.cpuProfileDir !== undefined) {
    flags.push('--cpu-prof', `--cpu-prof-dir=${path.resolve(settings.cpuProfileDir)}`);
  }
  if (settings.queryStatsFile !== undefined) flags.push('--import', './bench/query-stats.ts');
  return flags;
}

// Starts the Speedgate child on `databaseUrl` and returns it with the settings it parsed.
async function startSpeedgate(settings: Settings, databaseUrl: string) {
  const port = await freePort();
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    ISSUER: `http://127.0.0.1:${port}`,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    // Every request comes from 127.0.0.1, which the default limit blocks after 30 failures.
    OAUTH_FAILURE_LIMIT: '100000',
  };
  const childEnv = { ...env };
  if (settings.queryStatsFile !== undefined) {
    childEnv.QUERY_STATS_FILE = path.resolve(settings.queryStatsFile);
  }

  const server = await startChild(
    'speedgate',
    'src/server.ts',
    port,
    '/.well-known/oauth-authorization-server',
    childEnv,
    profilingFlags(settings),
  );
  return { server, config: loadConfig(env) };
}

interface Report {
  loadAtStart: number;
  idleRssBytes: number;
  verdicts: ReturnType<typeof judge>;
}

async function writeDocument(settings: Settings, report: Report): Promise<void> {
  const document = renderDocument({
    date: new Date(),
    machine: describeMachine(await serverVersion(settings.serverUrl)),
    command: commandLine(),
    connections: settings.connections,
    durationSeconds: settings.durationSeconds,
    warmupSeconds: settings.warmupSeconds,
    loadAtStart: report.loadAtStart,
    loadAtEnd: loadAverage(),
    idleRssBytes: report.idleRssBytes,
    table: formatTable(report.verdicts),
    summary: formatSummary(report.verdicts),
    notes: formatNotes(report.verdicts),
  });
  mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
  writeFileSync(path.join(ROOT, 'docs', 'benchmarks.md'), document);
}

async function main(settings: Settings, cleanup: Cleanup): Promise<void> {
  const loadAtStart = loadAverage();
  const database = await createBenchDatabase(settings.serverUrl);
  cleanup.add(`dropping database ${database.name}`, database.drop);
  process.stderr.write(`created database ${database.name}\n`);

  const { server: speedgate, config } = await startSpeedgate(settings, database.url);
  cleanup.add('stopping the Speedgate server', speedgate.stop);

  const { db } = await openDatabase({
    databaseUrl: database.url,
    dataDir: 'memory://',
    poolSize: 2,
  });
  cleanup.add('closing the seeding connection', () => db.destroy());
  const scopes = new ScopeRegistry(config.extraScopes);
  const context = { db, config, scopes, serverUrl: speedgate.url };
  const fixtures = await seedFixtures(context);

  const baseline = await startChild(
    'baseline',
    'bench/baseline-server.ts',
    await freePort(),
    '/baseline/json',
    { DATABASE_URL: database.url, BASELINE_USER_ID: fixtures.userId },
  );
  cleanup.add('stopping the baseline server', baseline.stop);
  const idleRssBytes = readRss(speedgate.pid) ?? 0;

  const allRoutes = buildRoutes(context, fixtures, {
    connections: settings.connections,
    codePoolSize: settings.codePoolSize,
    // Codes are seeded just before their warm-up: they must outlive it and the run.
    codeLifetimeSeconds: settings.warmupSeconds + settings.durationSeconds + 60,
  });
  const routes = selectRoutes(allRoutes, settings.routeNumbers);

  const results: RouteResult[] = [];
  for (const route of routes) {
    if (cleanup.started) return;
    process.stderr.write(`${allRoutes.indexOf(route) + 1}/${allRoutes.length} `);
    const server = route.server === 'baseline' ? baseline : speedgate;
    results.push(await measureRoute(route, server, settings));
  }

  // The one-query baseline is the second route.
  const baselineRun = results.find((result) => result.route === allRoutes[1])?.run;
  const verdicts = judge(results, baselineRun?.requestsPerSecond);
  console.log(
    `\n${formatTable(verdicts)}\n\n${formatSummary(verdicts)}\n\n${formatNotes(verdicts)}`,
  );

  if (routes.length !== allRoutes.length) {
    console.log('\nOnly some routes ran (BENCH_ROUTES), so docs/benchmarks.md is unchanged.');
    return;
  }
  await writeDocument(settings, { loadAtStart, idleRssBytes, verdicts });
  console.log('\nWrote docs/benchmarks.md.');
}

const cleanup = new Cleanup();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the load and cleaning up`);
    stopRunningPhase();
    void cleanup.run().finally(() => process.exit(130));
  });
}

try {
  await main(readSettings(), cleanup);
} catch (error) {
  const detail = error instanceof SettingsError ? error.message : (error as Error).stack;
  console.error(`bench failed: ${detail ?? String(error)}`);
  process.exitCode = 1;
} finally {
  await cleanup.run();
}
