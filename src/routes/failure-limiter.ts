import type { FastifyRequest } from 'fastify';
import type { RateLimiter } from '../db/rate-limiter.ts';
import { OAuthError } from '../oauth/errors.ts';

/** Error codes that a guessing attack produces: wrong secrets, codes and tokens. */
const GUESSING_ERRORS = new Set(['invalid_client', 'invalid_grant', 'invalid_token']);

/**
 * Limits failed attempts per address at the OAuth endpoints without adding
 * a query to successful requests. Only a failure is counted in the shared
 * store. An address that reaches the limit is remembered in memory until its
 * window ends, so the check itself costs nothing. One node allows `limit`
 * failures per window. Across N nodes an attacker gets at most `limit` + N - 1,
 * because a node blocks only after counting a failure of its own.
 */
export class FailureLimiter {
  readonly #limiter: RateLimiter;
  readonly #limit: number;
  readonly #windowSeconds: number;
  readonly #now: () => Date;
  readonly #blockedUntil = new Map<string, number>();

  /** `now` is the application clock, the one the shared counters use. */
  constructor(limiter: RateLimiter, limit: number, windowSeconds: number, now: () => Date) {
    this.#limiter = limiter;
    this.#limit = limit;
    this.#windowSeconds = windowSeconds;
    this.#now = now;
  }

  /** Throws a 429 when the request's address is over the limit. */
  check(request: FastifyRequest): void {
    const until = this.#blockedUntil.get(request.ip);
    if (until === undefined) return;

    const now = this.#now().getTime();
    if (until <= now) {
      this.#blockedUntil.delete(request.ip);
      return;
    }
    const retryAfter = String(Math.ceil((until - now) / 1000));
    throw new OAuthError('invalid_request', 'Too many failed requests from this address; retry later', {
      status: 429,
      headers: { 'retry-after': retryAfter },
    });
  }

  /** Counts `error` against the request's address when it is one a guessing attack produces. */
  async record(request: FastifyRequest, error: unknown): Promise<void> {
    if (!(error instanceof OAuthError) || !GUESSING_ERRORS.has(error.code)) return;

    // `hit` allows up to its limit, so `limit` - 1 blocks the address once the
    // limit-th failure is counted, and the next request is the first refused.
    const result = await this.#limiter.hit(`oauth-failures:${request.ip}`, this.#limit - 1, this.#windowSeconds);
    if (result.allowed) return;

    if (this.#blockedUntil.size > 10_000) this.#blockedUntil.clear();
    this.#blockedUntil.set(request.ip, this.#now().getTime() + result.retryAfterSeconds * 1000);
    request.log.warn({ event: 'rate_limited', ip: request.ip }, 'address blocked after repeated OAuth failures');
  }
}
