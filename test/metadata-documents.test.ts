import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { approveConsent, createPkce, postForm, readErrorPage, signInUser } from './helpers/code-flow.ts';
import { startServer, type TestServer } from './helpers/server.ts';

type Handler = (request: IncomingMessage, response: ServerResponse, url: string) => void;

/** A loopback web server that publishes client metadata documents and counts the requests for each path. */
class DocumentServer {
  readonly server = http.createServer((request, response) => this.#handle(request, response));
  readonly routes = new Map<string, Handler>();
  readonly requests = new Map<string, number>();
  base = '';

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    // Drops the connections of handlers that never respond, so close() returns.
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  url(path: string): string {
    return `${this.base}${path}`;
  }

  count(path: string): number {
    return this.requests.get(path) ?? 0;
  }

  /** Serves `document` as JSON at `path`, over a default document that names its own URL as client_id. */
  publish(path: string, document: Record<string, unknown> = {}, cacheControl = 'max-age=120'): string {
    const url = this.url(path);
    const body = JSON.stringify({ ...documentFor(url), ...document });
    this.routes.set(path, (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': cacheControl });
      response.end(body);
    });
    return url;
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const path = request.url ?? '/';
    this.requests.set(path, this.count(path) + 1);
    const handler = this.routes.get(path);
    if (handler === undefined) {
      response.writeHead(404).end();
      return;
    }
    handler(request, response, this.url(path));
  }
}

const CLIENT_REDIRECT_URI = 'http://127.0.0.1:41999/callback';

function documentFor(url: string): Record<string, unknown> {
  return {
    client_id: url,
    client_name: 'Local MCP Client',
    client_uri: 'http://127.0.0.1:41999/',
    redirect_uris: [CLIENT_REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };
}

function authorizePath(clientId: string, extra: Record<string, string> = {}): string {
  const pkce = createPkce();
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: CLIENT_REDIRECT_URI,
    scope: 'read:profile',
    state: 'state-1',
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    ...extra,
  });
  return `/o/authorize/?${query.toString()}`;
}

/** Loads the authorization page for `clientId` without a session and returns its status and error message. */
async function authorizeError(server: TestServer, clientId: string) {
  const response = await fetch(`${server.url}${authorizePath(clientId)}`, { redirect: 'manual' });
  return { status: response.status, location: response.headers.get('location'), message: readErrorPage(await response.text()) };
}

function unusable(url: string, detail: string): string {
  return `The client metadata document at ${url} is not usable: ${detail}`;
}

const documents = new DocumentServer();
/** Fetches documents from loopback addresses, such as the test's document server. */
let server: TestServer;
/** Runs with the production default: loopback and private addresses are refused. */
let strict: TestServer;

t.before(async () => {
  await documents.start();
  server = await startServer(t, { env: { CIMD_ALLOW_LOOPBACK: 'true' } });
  strict = await startServer(t);
});

t.teardown(() => documents.stop());

t.test('metadata document client completes a flow', async (t) => {
  const clientId = documents.publish('/clients/flow.json');
  const { browser } = await signInUser(server);
  const pkce = createPkce();
  const authorizationUrl = `${server.url}${authorizePath(clientId, { code_challenge: pkce.challenge, scope: 'read:profile read:teams' })}`;

  const consent = await approveConsent(browser, authorizationUrl);
  t.equal(consent.pageStatus, 200);
  t.match(consent.pageHtml, /Authorize Local MCP Client/);
  t.match(consent.pageHtml, /unverified, registered by itself/);
  t.match(consent.pageHtml, /127\.0\.0\.1:41999/, 'the consent page names the redirect host');
  t.equal(consent.status, 303);
  t.equal(`${consent.location.origin}${consent.location.pathname}`, CLIENT_REDIRECT_URI);
  t.equal(consent.location.searchParams.get('state'), 'state-1');
  t.equal(consent.location.searchParams.get('iss'), server.url);
  const code = consent.location.searchParams.get('code');
  t.type(code, 'string');

  const tokens = await postForm(`${server.url}/o/token/`, {
    grant_type: 'authorization_code',
    code: code ?? '',
    redirect_uri: CLIENT_REDIRECT_URI,
    client_id: clientId,
    code_verifier: pkce.verifier,
  });
  t.equal(tokens.status, 200);
  t.equal(tokens.body.token_type, 'Bearer');
  t.equal(tokens.body.scope, 'read:profile read:teams');
  t.type(tokens.body.refresh_token, 'string');

  const me = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${tokens.body.access_token}` } });
  t.equal(me.status, 200);

  const refreshed = await postForm(`${server.url}/o/token/`, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: clientId });
  t.equal(refreshed.status, 200);
  t.type(refreshed.body.access_token, 'string');

  const row = await server.app.speedgate.db.selectFrom('clients').selectAll().where('id', '=', clientId).executeTakeFirstOrThrow();
  t.equal(row.registration_type, 'metadata_document');
  t.equal(row.secret_hash, null);
  t.equal(documents.count('/clients/flow.json'), 1, 'the document was fetched once for the whole flow');
});

t.test('cached document is not fetched again', async (t) => {
  const clientId = documents.publish('/clients/cached.json', {}, 'public, max-age=120');

  for (let attempt = 1; attempt <= 3; attempt += 1) {
    const response = await fetch(`${server.url}${authorizePath(clientId)}`, { redirect: 'manual' });
    t.equal(response.status, 303, `request ${attempt} redirects to the login page`);
    t.match(response.headers.get('location'), /^\/accounts\/login\/\?next=/);
  }
  t.equal(documents.count('/clients/cached.json'), 1, 'one fetch within max-age');

  server.clock.advance(119);
  await fetch(`${server.url}${authorizePath(clientId)}`, { redirect: 'manual' });
  t.equal(documents.count('/clients/cached.json'), 1, 'still cached at 119 seconds');

  server.clock.advance(2);
  await fetch(`${server.url}${authorizePath(clientId)}`, { redirect: 'manual' });
  t.equal(documents.count('/clients/cached.json'), 2, 'fetched again once max-age has passed');
});

t.test('document naming another client_id is rejected', async (t) => {
  const clientId = documents.publish('/clients/impostor.json', { client_id: documents.url('/clients/other.json') });
  const reason = unusable(clientId, 'the document client_id must equal its URL');

  const page = await authorizeError(server, clientId);
  t.equal(page.status, 400);
  t.equal(page.location, null, 'never redirected');
  t.equal(page.message, reason);

  const token = await postForm(`${server.url}/o/token/`, { grant_type: 'authorization_code', code: 'any', client_id: clientId, code_verifier: createPkce().verifier });
  t.equal(token.status, 401);
  t.equal(token.headers.get('www-authenticate'), 'Basic realm="speedgate"');
  t.same(token.body, { error: 'invalid_client', error_description: reason });

  const stored = await server.app.speedgate.db.selectFrom('clients').select('id').where('id', '=', clientId).executeTakeFirst();
  t.equal(stored, undefined, 'no client row is stored');
});

t.test('document with a secret method is rejected', async (t) => {
  const clientId = documents.publish('/clients/confidential.json', { token_endpoint_auth_method: 'client_secret_basic' });

  const page = await authorizeError(server, clientId);
  t.equal(page.status, 400);
  t.equal(page.message, unusable(clientId, 'a metadata document client must use token_endpoint_auth_method none'));
});

t.test('document with invalid metadata is rejected', async (t) => {
  const clientId = documents.publish('/clients/script.json', { redirect_uris: ['javascript:alert(1)'] });

  const page = await authorizeError(server, clientId);
  t.equal(page.status, 400);
  t.equal(page.message, unusable(clientId, 'redirect_uri javascript:alert(1): the javascript: scheme is not allowed'));
});

t.test('redirect is not followed', async (t) => {
  const target = documents.publish('/clients/target.json');
  documents.routes.set('/clients/moved.json', (_request, response) => {
    response.writeHead(302, { location: target }).end();
  });
  const clientId = documents.url('/clients/moved.json');

  const page = await authorizeError(server, clientId);
  t.equal(page.status, 400);
  t.equal(page.message, unusable(clientId, 'could not fetch the client metadata document: the server responded with HTTP 302, and redirects are not followed'));
  t.equal(documents.count('/clients/target.json'), 0, 'the redirect target was never requested');
});

t.test('document over 5 KiB is rejected', async (t) => {
  const clientId = documents.publish('/clients/large.json', { padding: 'p'.repeat(5 * 1024) });

  const page = await authorizeError(server, clientId);
  t.equal(page.status, 400);
  t.equal(page.message, unusable(clientId, 'could not fetch the client metadata document: the document is larger than 5120 bytes'));
});

t.test('document that is not JSON is rejected', async (t) => {
  documents.routes.set('/clients/html.json', (_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
  });
  const clientId = documents.url('/clients/html.json');

  const page = await authorizeError(server, clientId);
  t.equal(page.message, unusable(clientId, 'could not fetch the client metadata document: the document is not valid JSON'));
});

t.test('silent server times out', async (t) => {
  documents.routes.set('/clients/silent.json', () => {
    // Never responds, so only the fetcher's deadline can end the request.
  });
  const clientId = documents.url('/clients/silent.json');

  const started = Date.now();
  const page = await authorizeError(server, clientId);
  const elapsed = Date.now() - started;
  t.equal(page.status, 400);
  t.equal(page.message, unusable(clientId, 'could not fetch the client metadata document: timed out after 3000 ms'));
  t.ok(elapsed >= 2900 && elapsed < 4500, `gave up after ${elapsed} ms`);
});

t.test('trickling server times out', async (t) => {
  const timers: NodeJS.Timeout[] = [];
  documents.routes.set('/clients/trickle.json', (_request, response) => {
    // Sends a byte every 200 ms for 8 s. Each byte keeps the socket busy, so only
    // a deadline for the whole response stops it near 3 s.
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write('{"client_id":');
    const timer = setInterval(() => response.write(' '), 200);
    timers.push(timer, setTimeout(() => {
      clearInterval(timer);
      response.end();
    }, 8000));
  });
  t.teardown(() => timers.forEach((timer) => clearTimeout(timer)));
  const clientId = documents.url('/clients/trickle.json');

  const started = Date.now();
  const page = await authorizeError(server, clientId);
  const elapsed = Date.now() - started;
  t.equal(page.message, unusable(clientId, 'could not fetch the client metadata document: timed out after 3000 ms'));
  t.ok(elapsed < 4500, `gave up after ${elapsed} ms`);
});

t.test('loopback documents need CIMD_ALLOW_LOOPBACK', async (t) => {
  const clientId = documents.publish('/clients/loopback.json');

  const page = await authorizeError(strict, clientId);
  t.equal(page.status, 400);
  t.equal(page.message, 'The application that sent you here is not registered with this server.');
  t.equal(documents.count('/clients/loopback.json'), 0, 'the URL was not fetched');

  const token = await postForm(`${strict.url}/o/token/`, { grant_type: 'authorization_code', code: 'any', client_id: clientId, code_verifier: createPkce().verifier });
  t.equal(token.status, 401);
  t.same(token.body, { error: 'invalid_client', error_description: 'Client authentication failed' });
});

/**
 * Counts calls to the HTTP clients the fetcher uses, so a test can prove that
 * a refused client_id sent nothing.
 */
function countConnections(t: Test): { count: number } {
  const counter = { count: 0 };
  const originalHttps = https.get;
  const originalHttp = http.get;
  https.get = ((...args: Parameters<typeof https.get>) => {
    counter.count += 1;
    return originalHttps(...args);
  }) as typeof https.get;
  http.get = ((...args: Parameters<typeof http.get>) => {
    counter.count += 1;
    return originalHttp(...args);
  }) as typeof http.get;
  t.teardown(() => {
    https.get = originalHttps;
    http.get = originalHttp;
  });
  return counter;
}

t.test('private addresses are refused before connecting', async (t) => {
  // Each of these is an IP literal, which the fetcher checks before it opens any connection.
  const connections = countConnections(t);
  const cases: [string, string][] = [
    ['https://127.0.0.1/doc', '127.0.0.1'],
    ['https://10.0.0.1/doc', '10.0.0.1'],
    ['https://169.254.169.254/doc', '169.254.169.254'],
    ['https://[::1]/doc', '::1'],
    ['https://192.168.1.10/doc', '192.168.1.10'],
    ['https://0.0.0.0/doc', '0.0.0.0'],
    ['https://[fe80::1]/doc', 'fe80::1'],
    ['https://[::ffff:127.0.0.1]/doc', '::ffff:7f00:1'],
    ['https://2130706433/doc', '127.0.0.1'],
    ['https://0x7f.1/doc', '127.0.0.1'],
  ];

  for (const [clientId, address] of cases) {
    const page = await authorizeError(strict, clientId);
    t.equal(page.status, 400, clientId);
    t.equal(page.message, unusable(clientId, `the address ${address} is private, loopback or reserved`), clientId);
  }

  const metadataService = 'https://169.254.169.254/doc';
  const token = await postForm(`${strict.url}/o/token/`, { grant_type: 'authorization_code', code: 'any', client_id: metadataService, code_verifier: createPkce().verifier });
  t.equal(token.status, 401);
  t.equal(token.headers.get('www-authenticate'), 'Basic realm="speedgate"');
  t.same(token.body, {
    error: 'invalid_client',
    error_description: unusable(metadataService, 'the address 169.254.169.254 is private, loopback or reserved'),
  });

  t.equal(connections.count, 0, 'no request was started');
});

t.test('document URL needs a path', async (t) => {
  const connections = countConnections(t);

  for (const clientId of ['https://client.example', 'https://client.example/', 'https://user:pass@client.example/doc', 'https://client.example/doc#frag']) {
    const page = await authorizeError(strict, clientId);
    t.equal(page.status, 400, clientId);
    t.equal(page.message, unusable(clientId, 'a client_id URL needs a path and no fragment or credentials'), clientId);
  }
  t.equal(connections.count, 0, 'no request was started');
});
