import type autocannon from 'autocannon';

/** Response counts of one phase, with the first few bodies of unexpected responses. */
export class Tally {
  unexpected = 0;
  readonly statuses = new Map<string, number>();
  readonly samples: string[] = [];

  /** Counts a response under `label`, such as `200` or `400 slow_down`. */
  count(label: string, expected: boolean, body: string): void {
    this.statuses.set(label, (this.statuses.get(label) ?? 0) + 1);
    if (expected) return;

    this.unexpected += 1;
    if (this.samples.length < 3) this.samples.push(`${label}: ${body.slice(0, 300)}`);
  }
}

/** The requests of one phase (warm-up or measured run) of a route. */
export interface Phase {
  requests: autocannon.Request[];
  /** The maximum requests the phase may send, when each consumes a seeded value. */
  maxRequests?: number;
  /** A line for the report about the values the phase used. */
  note?: () => string | undefined;
}

/** A measured route: the server it targets, its requests and its throughput target. */
export interface BenchRoute {
  label: string;
  server: 'baseline' | 'speedgate';
  /** The minimum requests/s for this route, as a ratio of the one-query baseline. */
  minRatio?: number;
  /** Seeds the values the route consumes; runs once, before its warm-up. */
  prepare?: () => Promise<void>;
  phase(tally: Tally): Phase;
}

/** Load settings of the routes: the connection count and the one-time value pools. */
export interface RouteSettings {
  connections: number;
  /** Authorization codes seeded for the code exchange run (warm-up included). */
  codePoolSize: number;
  /** Seconds the seeded codes stay valid. */
  codeLifetimeSeconds: number;
}

/** Headers of a form-encoded POST (RFC 6749 section 3.2). */
export const FORM_HEADERS = { 'content-type': 'application/x-www-form-urlencoded' };

/** Encodes `fields` as an application/x-www-form-urlencoded body. */
export function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}
