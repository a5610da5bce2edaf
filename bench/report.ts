import type { PhaseResult } from './measure.ts';
import type { BenchRoute } from './route-types.ts';

/** Every Speedgate route's 99th percentile latency must stay under this, in milliseconds. */
export const MAX_P99_MS = 25;
/** The Speedgate server's peak RSS must stay under this, in bytes (200 MB). */
export const MAX_RSS_BYTES = 200 * 1_000_000;

/** The measured run of one route, with what its warm-up reached. */
export interface RouteResult {
  route: BenchRoute;
  run: PhaseResult;
  /** The server's peak RSS over the warm-up and the run. */
  peakRssBytes: number;
}

/** A route's numbers checked against its targets. */
export interface RouteVerdict {
  result: RouteResult;
  /** Requests/s as a ratio of the one-query baseline, or undefined without that baseline. */
  ratio: number | undefined;
  /** One entry per target the route missed; empty when it met them all. */
  misses: string[];
}

const megabytes = (bytes: number) => bytes / 1_000_000;

/** Checks each route against its ratio, latency and memory targets. */
export function judge(results: RouteResult[], baselineRps: number | undefined): RouteVerdict[] {
  return results.map((result) => {
    const { route, run } = result;
    const ratio = baselineRps === undefined ? undefined : run.requestsPerSecond / baselineRps;
    const misses: string[] = [];
    if (route.server !== 'speedgate') return { result, ratio, misses };

    if (route.minRatio !== undefined && ratio !== undefined && ratio < route.minRatio) {
      misses.push(`${ratio.toFixed(2)}× < ${route.minRatio.toFixed(2)}×`);
    }
    if (!(run.p99Ms < MAX_P99_MS)) misses.push(`p99 ${run.p99Ms.toFixed(1)} ms ≥ ${MAX_P99_MS} ms`);
    if (result.peakRssBytes >= MAX_RSS_BYTES) {
      misses.push(
        `RSS ${megabytes(result.peakRssBytes).toFixed(0)} MB ≥ ${megabytes(MAX_RSS_BYTES)} MB`,
      );
    }
    if (run.unexpected > 0) misses.push(`${run.unexpected} unexpected responses`);
    return { result, ratio, misses };
  });
}

function verdictCell(verdict: RouteVerdict): string {
  if (verdict.result.route.server !== 'speedgate') return 'baseline';
  if (verdict.ratio === undefined && verdict.result.route.minRatio !== undefined)
    return 'no baseline to compare';
  return verdict.misses.length === 0 ? 'met' : `**not met**: ${verdict.misses.join('; ')}`;
}

/** Formats the results as a Markdown table, the same on the console and in the docs. */
export function formatTable(verdicts: RouteVerdict[]): string {
  const header = [
    '| Route | Requests/s | p50 ms | p99 ms | Unexpected | Server peak RSS MB ' +
      '| × one-query baseline | Target | Result |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  const rows = verdicts.map((verdict) => {
    const { route, run, peakRssBytes } = verdict.result;
    const cells = [
      route.label,
      run.requestsPerSecond.toFixed(0),
      run.p50Ms.toFixed(1),
      run.p99Ms.toFixed(1),
      String(run.unexpected),
      megabytes(peakRssBytes).toFixed(0),
      verdict.ratio === undefined ? 'n/a' : `${verdict.ratio.toFixed(2)}×`,
      route.minRatio === undefined ? '' : `≥ ${route.minRatio.toFixed(2)}×`,
      verdictCell(verdict),
    ];
    return `| ${cells.join(' | ')} |`;
  });
  return [...header, ...rows].join('\n');
}

/** Lists, per route, the response mix, the seeded values used and sample unexpected bodies. */
export function formatNotes(verdicts: RouteVerdict[]): string {
  const lines: string[] = [];
  for (const { result } of verdicts) {
    const { route, run } = result;
    const statuses = [...run.tally.statuses]
      .map(([label, count]) => `${label} × ${count}`)
      .join(', ');
    const parts = [
      `${run.responses} responses in ${run.seconds.toFixed(1)} s (${statuses || 'none'})`,
    ];
    if (run.note !== undefined) parts.push(run.note);
    lines.push(`- ${route.label}: ${parts.join('; ')}.`);
    for (const sample of run.tally.samples)
      lines.push(`  - unexpected: \`${sample.replace(/`/g, "'")}\``);
  }
  return lines.join('\n');
}

/** Summarizes which targets were met, one sentence per missed route. */
export function formatSummary(verdicts: RouteVerdict[]): string {
  const judged = verdicts.filter((verdict) => verdict.result.route.server === 'speedgate');
  const missed = judged.filter((verdict) => verdict.misses.length > 0);
  if (judged.length === 0) return 'No Speedgate route ran, so no target was checked.';
  if (missed.length === 0) return `All ${judged.length} Speedgate routes met their targets.`;

  const lines = [
    `${judged.length - missed.length} of ${judged.length} Speedgate routes met all their ` +
      'targets. Not met:',
    '',
  ];
  for (const verdict of missed)
    lines.push(`- ${verdict.result.route.label}: ${verdict.misses.join('; ')}.`);
  return lines.join('\n');
}
