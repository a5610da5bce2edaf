import type autocannon from 'autocannon';
import { GRANT_TYPES } from '../src/oauth/clients.ts';
import { codeExchangeRoute, devicePollRoute, refreshRoute } from './pooled-routes.ts';
import {
  FORM_HEADERS,
  form,
  type BenchRoute,
  type RouteSettings,
  type Tally,
} from './route-types.ts';
import type { Fixtures, SeedContext } from './seed.ts';

// A request with a fixed body whose only expected response is a 2xx.
function fixedRequest(request: autocannon.Request, tally: Tally): autocannon.Request {
  return {
    ...request,
    onResponse: (status, body) => tally.count(String(status), status >= 200 && status < 300, body),
  };
}

function fixedRoute(
  label: string,
  server: BenchRoute['server'],
  minRatio: number | undefined,
  request: autocannon.Request,
): BenchRoute {
  return {
    label,
    server,
    minRatio,
    phase: (tally) => ({ requests: [fixedRequest(request, tally)] }),
  };
}

/** Returns every measured route, baselines first, in the order they run. */
export function buildRoutes(
  context: SeedContext,
  fixtures: Fixtures,
  settings: RouteSettings,
): BenchRoute[] {
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const basic = { ...FORM_HEADERS, authorization: fixtures.basicAuthorization };

  return [
    fixedRoute('baseline GET /baseline/json', 'baseline', undefined, {
      method: 'GET',
      path: '/baseline/json',
    }),
    fixedRoute('baseline GET /baseline/query', 'baseline', undefined, {
      method: 'GET',
      path: '/baseline/query',
    }),
    fixedRoute('GET /api/v1/me/ with JWT', 'speedgate', 0.8, {
      method: 'GET',
      path: '/api/v1/me/',
      headers: bearer(fixtures.accessToken),
    }),
    fixedRoute('GET /api/v1/me/ with PAT', 'speedgate', 0.8, {
      method: 'GET',
      path: '/api/v1/me/',
      headers: bearer(fixtures.pat),
    }),
    fixedRoute('POST /o/introspect/ (JWT)', 'speedgate', 0.8, {
      method: 'POST',
      path: '/o/introspect/',
      headers: basic,
      body: form({ token: fixtures.accessToken }),
    }),
    fixedRoute('POST /o/token/ client_credentials', 'speedgate', 0.75, {
      method: 'POST',
      path: '/o/token/',
      headers: basic,
      body: form({ grant_type: GRANT_TYPES.clientCredentials }),
    }),
    devicePollRoute(context, fixtures, settings),
    refreshRoute(context, fixtures, settings),
    codeExchangeRoute(context, fixtures, settings),
  ];
}
