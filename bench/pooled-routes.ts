import type autocannon from 'autocannon';
import { GRANT_TYPES } from '../src/oauth/clients.ts';
import { FORM_HEADERS, form, type BenchRoute, type RouteSettings } from './route-types.ts';
import {
  CODE_VERIFIER,
  seedAuthorizationCodes,
  seedPendingDeviceCodes,
  seedRefreshTokens,
  type Fixtures,
  type SeedContext,
} from './seed.ts';

/** One-time values handed out first in, first out. */
class ValueQueue {
  readonly #items: string[];
  #head = 0;

  constructor(items: string[]) {
    this.#items = [...items];
  }

  take(): string | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head++] : undefined;
  }

  put(value: string): void {
    this.#items.push(value);
  }

  get size(): number {
    return this.#items.length - this.#head;
  }
}

// RFC 8628 section 3.5: a poll sooner than the interval gets slow_down, and
// one before approval authorization_pending. Both are 400s and expected here.
const PENDING_ERROR = /"error":"(authorization_pending|slow_down)"/;

/** Polls pending device codes, as a device waiting for its user's approval does. */
export function devicePollRoute(
  context: SeedContext,
  fixtures: Fixtures,
  settings: RouteSettings,
): BenchRoute {
  let deviceCodes: string[] = [];
  return {
    label: 'POST /o/token/ device_code, pending',
    server: 'speedgate',
    minRatio: 0.8,
    // Each device code is polled by one connection at a time, as a device polls only its own.
    prepare: async () => {
      deviceCodes = await seedPendingDeviceCodes(context, fixtures, settings.connections * 2);
    },
    phase(tally) {
      const queue = new ValueQueue(deviceCodes);
      const request: autocannon.Request = {
        method: 'POST',
        path: '/o/token/',
        headers: FORM_HEADERS,
        setupRequest(request, context) {
          const deviceCode = queue.take() ?? 'device-code-queue-empty';
          context.deviceCode = deviceCode;
          return {
            ...request,
            body: form({
              grant_type: GRANT_TYPES.deviceCode,
              device_code: deviceCode,
              client_id: fixtures.publicClientId,
            }),
          };
        },
        onResponse(status, body, context) {
          queue.put(String(context.deviceCode));
          const pending = status === 400 ? PENDING_ERROR.exec(body)?.[1] : undefined;
          tally.count(
            pending === undefined ? String(status) : `400 ${pending}`,
            pending !== undefined,
            body,
          );
        },
      };
      return { requests: [request] };
    },
  };
}

/** Rotates refresh tokens, each request with the token the previous one returned. */
export function refreshRoute(
  context: SeedContext,
  fixtures: Fixtures,
  settings: RouteSettings,
): BenchRoute {
  let queue = new ValueQueue([]);
  let families = 0;
  return {
    label: 'POST /o/token/ refresh_token',
    server: 'speedgate',
    minRatio: 0.4,
    // Each refresh rotates its token, so every family is a chain: a token goes back
    // in the queue only as the successor that its response returned. A phase's
    // last requests lose their chains, so four families are seeded per connection.
    prepare: async () => {
      const tokens = await seedRefreshTokens(context, fixtures, settings.connections * 4);
      families = tokens.length;
      queue = new ValueQueue(tokens);
    },
    phase(tally) {
      const request: autocannon.Request = {
        method: 'POST',
        path: '/o/token/',
        headers: FORM_HEADERS,
        setupRequest(request) {
          const token = queue.take() ?? 'sgr_refresh-queue-empty';
          return {
            ...request,
            body: form({
              grant_type: GRANT_TYPES.refreshToken,
              refresh_token: token,
              client_id: fixtures.publicClientId,
            }),
          };
        },
        onResponse(status, body) {
          const successor = status === 200 ? readField(body, 'refresh_token') : undefined;
          if (successor !== undefined) queue.put(successor);
          tally.count(String(status), successor !== undefined, body);
        },
      };
      return {
        requests: [request],
        note: () => `${queue.size} of ${families} seeded token chains still usable at the end`,
      };
    },
  };
}

function readField(body: string, name: string): string | undefined {
  try {
    const value = (JSON.parse(body) as Record<string, unknown>)[name];
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Redeems a different seeded authorization code with each request. */
export function codeExchangeRoute(
  context: SeedContext,
  fixtures: Fixtures,
  settings: RouteSettings,
): BenchRoute {
  let queue = new ValueQueue([]);
  return {
    label: 'POST /o/token/ authorization_code',
    server: 'speedgate',
    minRatio: 0.4,
    prepare: async () => {
      queue = new ValueQueue(
        await seedAuthorizationCodes(
          context,
          fixtures,
          settings.codePoolSize,
          settings.codeLifetimeSeconds,
        ),
      );
    },
    phase(tally) {
      const request: autocannon.Request = {
        method: 'POST',
        path: '/o/token/',
        headers: FORM_HEADERS,
        setupRequest(request) {
          // maxRequests keeps the phase within the queue, so the fallback is never sent.
          const code = queue.take() ?? 'code-queue-empty';
          const fields = {
            grant_type: GRANT_TYPES.authorizationCode,
            code,
            code_verifier: CODE_VERIFIER,
            redirect_uri: fixtures.redirectUri,
            client_id: fixtures.publicClientId,
          };
          return { ...request, body: form(fields) };
        },
        onResponse: (status, body) => tally.count(String(status), status === 200, body),
      };
      const available = queue.size;
      return {
        requests: [request],
        maxRequests: available,
        note: () =>
          queue.size < settings.connections
            ? `all ${available} codes used before the time was up: raise BENCH_CODE_POOL`
            : `${available} codes available, ${queue.size} left`,
      };
    },
  };
}
