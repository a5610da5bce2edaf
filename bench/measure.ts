import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { RssSampler } from './processes.ts';
import { Tally, type BenchRoute } from './route-types.ts';

/** The numbers of one phase of one route. */
export interface PhaseResult {
  /** Seconds from the start to the last response. */
  seconds: number;
  responses: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses other than the route's expected response, plus socket errors and timeouts. */
  unexpected: number;
  tally: Tally;
  peakRssBytes: number;
  note: string | undefined;
}

/** Seconds a request may take before autocannon counts it as timed out. */
const REQUEST_TIMEOUT_SECONDS = 10;

/**
 * Pause after each phase, in milliseconds. Requests in flight when autocannon
 * stops still run in the server, and the pause keeps them out of the next phase.
 */
const DRAIN_MS = 1000;

let running: autocannon.Instance | undefined;

/** Stops the phase in progress, if any, as on Ctrl-C. */
export function stopRunningPhase(): void {
  running?.stop();
}

// Nearest-rank percentile of sorted values.
function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)];
}

/**
 * Sends `route`'s requests to `url` from `connections` connections for
 * `seconds`, or until the phase's value pool is used up, while sampling the
 * RSS of the server process `serverPid`.
 */
export async function runPhase(
  route: BenchRoute,
  url: string,
  connections: number,
  seconds: number,
  serverPid: number,
): Promise<PhaseResult> {
  const tally = new Tally();
  const phase = route.phase(tally);
  if (phase.maxRequests !== undefined && phase.maxRequests < connections) {
    throw new Error(
      `${route.label}: only ${phase.maxRequests} seeded values left for ${connections} connections`,
    );
  }

  const latencies: number[] = [];
  let lastResponseAt = 0;
  const sampler = new RssSampler(serverPid);
  const startedAt = performance.now();

  const instance = autocannon({
    url,
    connections,
    duration: seconds,
    ...(phase.maxRequests === undefined ? {} : { amount: phase.maxRequests }),
    timeout: REQUEST_TIMEOUT_SECONDS,
    requests: phase.requests,
  });
  running = instance;
  instance.on('response', (_client, _status, _bytes, latencyMs) => {
    latencies.push(latencyMs);
    lastResponseAt = performance.now();
  });
  // autocannon ignores `duration` when `amount` is set, so this timer ends such a phase on time.
  const stopTimer = setTimeout(() => instance.stop(), seconds * 1000);

  let result: autocannon.Result;
  try {
    result = await instance;
  } finally {
    clearTimeout(stopTimer);
    running = undefined;
  }
  await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
  const peakRssBytes = sampler.stop();

  const sorted = Float64Array.from(latencies).sort();
  const elapsed = Math.max(lastResponseAt - startedAt, 1) / 1000;
  return {
    seconds: elapsed,
    responses: latencies.length,
    requestsPerSecond: latencies.length / elapsed,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    unexpected: tally.unexpected + result.errors,
    tally,
    peakRssBytes,
    note: phase.note?.(),
  };
}
