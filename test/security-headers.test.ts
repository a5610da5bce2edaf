import t, { type Test } from 'tap';
import { createPat } from '../src/accounts/personal-access-tokens.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { authorizationParameters, authorizePath, createPkce, PASSWORD, REDIRECT_URI, registerCodeClient } from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { createTestClient, createTestUser, startDevice } from './helpers/tokens.ts';

/** Returns the address a server listens on, which under an https issuer differs from the issuer. */
function listeningUrl(server: TestServer): string {
  const address = server.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the server is not listening on a TCP port');
  return `http://127.0.0.1:${address.port}`;
}

interface PageCheck {
  name: string;
  status: number;
  headers: Headers;
}

/** Asserts the headers every page must carry, on both http and https issuers. */
function checkPageHeaders(t: Test, page: PageCheck): void {
  const policy = page.headers.get('content-security-policy') ?? '';
  t.match(policy, /(^|;)\s*frame-ancestors 'none'(;|$)/, `${page.name}: CSP forbids framing`);
  t.equal(page.headers.get('x-frame-options'), 'DENY', `${page.name}: X-Frame-Options`);
  t.equal(page.headers.get('x-content-type-options'), 'nosniff', `${page.name}: X-Content-Type-Options`);
  t.equal(page.headers.get('referrer-policy'), 'no-referrer', `${page.name}: Referrer-Policy`);
}

interface SetCookie {
  name: string;
  attributes: string[];
}

function readSetCookies(response: Response): SetCookie[] {
  return response.headers.getSetCookie().map((header) => {
    const [pair, ...attributes] = header.split(';').map((part) => part.trim());
    return { name: pair.slice(0, pair.indexOf('=')), attributes: attributes.map((attribute) => attribute.toLowerCase()) };
  });
}

/**
 * Loads every kind of page a user meets, signed in where the page needs it,
 * and returns each page's status and headers.
 */
async function visitEveryPage(issuerServer: TestServer, baseUrl: string): Promise<PageCheck[]> {
  // Helpers send requests to `server.url`, the issuer: point them at the listening address.
  const server = { ...issuerServer, url: baseUrl };
  const { db, scopes } = server.app.speedgate;
  const pages: PageCheck[] = [];
  const visit = async (name: string, response: Promise<Response>) => {
    const result = await response;
    await result.arrayBuffer();
    pages.push({ name, status: result.status, headers: result.headers });
  };

  const anonymous = new BrowserSession(baseUrl);
  await visit('login page', anonymous.get('/accounts/login/'));
  await visit('signup page', anonymous.get('/accounts/signup/'));
  await visit('home page', anonymous.get('/'));
  await visit('not-found page', anonymous.get('/accounts/no-such-page/'));
  await visit('CSRF rejection page', anonymous.post('/accounts/login/', { email: 'a@example.com', password: 'wrong password' }));
  await visit('failed login page', anonymous.submit('/accounts/login/', { email: 'nobody@example.com', password: 'wrong password' }));
  await visit('unknown client error page', anonymous.get('/o/authorize/?client_id=unknown&response_type=code'));

  const email = `headers-${Date.now()}@example.com`;
  const user = await createTestUser(server, email);
  const browser = new BrowserSession(baseUrl);
  const login = await browser.logIn(email, PASSWORD);
  if (login.status !== 303) throw new Error(`login failed with ${login.status}`);

  const { client: deviceClient } = await createTestClient(server);
  const started = await startDevice(server, deviceClient.id);
  await visit('device entry page', browser.get('/o/device/'));
  await visit('device confirmation page', browser.submit('/o/device/', { user_code: started.userCode }));
  await visit('device wrong code page', browser.submit('/o/device/', { user_code: 'BCDF-BCDF' }));

  const { client: codeClient } = await registerCodeClient(server);
  await visit('consent page', browser.get(authorizePath(authorizationParameters(codeClient.id, createPkce()))));
  const unregistered = authorizationParameters(codeClient.id, createPkce(), { redirect_uri: 'https://evil.example/cb' });
  await visit('redirect_uri error page', browser.get(authorizePath(unregistered)));

  const pat = await createPat(db, scopes, user, { name: 'headers', scopes: ['read:profile'], expiresAt: null }, server.clock.now());
  const owned = await registerClient(
    db,
    scopes,
    { name: 'Owned', grantTypes: ['authorization_code'], redirectUris: [REDIRECT_URI], registrationType: 'operator', ownerId: user.id },
    server.clock.now(),
  );
  await visit('tokens page', browser.get('/accounts/tokens/'));
  await visit('token revoke page', browser.get(`/accounts/tokens/${pat.row.id}/revoke/`));
  await visit('applications page', browser.get('/accounts/applications/'));
  await visit('developer page', browser.get('/accounts/developer/'));
  await visit('developer application page', browser.get(`/accounts/developer/${owned.client.id}/`));
  await visit('developer delete page', browser.get(`/accounts/developer/${owned.client.id}/delete/`));
  await visit('security page', browser.get('/accounts/security/'));
  await visit('logout page', browser.get('/accounts/logout/'));
  return pages;
}

t.test('pages carry security headers', async (t) => {
  const server = await startServer(t);
  const pages = await visitEveryPage(server, server.url);

  const expectedStatuses: Record<string, number> = {
    'not-found page': 404,
    'CSRF rejection page': 403,
    'failed login page': 401,
    'unknown client error page': 400,
    'device wrong code page': 400,
    'redirect_uri error page': 400,
  };
  for (const page of pages) {
    t.equal(page.status, expectedStatuses[page.name] ?? 200, `${page.name}: status`);
    checkPageHeaders(t, page);
    t.equal(page.headers.get('strict-transport-security'), null, `${page.name}: no HSTS under an http issuer`);
  }
});

t.test('API and metadata carry headers', async (t) => {
  const server = await startServer(t);
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/jwks.json', '/api/v1/me/']) {
    const response = await fetch(`${server.url}${path}`);
    await response.arrayBuffer();
    t.equal(response.headers.get('x-content-type-options'), 'nosniff', `${path}: X-Content-Type-Options`);
    t.equal(response.headers.get('x-frame-options'), 'DENY', `${path}: X-Frame-Options`);
    t.equal(response.headers.get('strict-transport-security'), null, `${path}: no HSTS under an http issuer`);
  }
});

t.test('http issuer cookies are lax', async (t) => {
  const server = await startServer(t);
  const email = `cookies-${Date.now()}@example.com`;
  await createTestUser(server, email);
  const browser = new BrowserSession(server.url);

  const loginPage = await browser.get('/accounts/login/');
  await loginPage.arrayBuffer();
  const [csrfCookie] = readSetCookies(loginPage);
  t.equal(csrfCookie?.name, 'sg_csrf', 'the login page sets the CSRF binding cookie');
  t.ok(csrfCookie?.attributes.includes('httponly'), 'the CSRF cookie is HttpOnly');
  t.ok(csrfCookie?.attributes.includes('samesite=lax'), 'the CSRF cookie is SameSite=Lax');
  t.ok(csrfCookie?.attributes.includes('path=/'), 'the CSRF cookie covers the whole site');
  t.notOk(csrfCookie?.attributes.includes('secure'), 'no Secure flag over http, or browsers would drop it');

  const login = await browser.logIn(email, PASSWORD);
  t.equal(login.status, 303);
  const session = readSetCookies(login).find((cookie) => cookie.name === 'sg_session');
  t.ok(session, 'login sets the session cookie');
  t.ok(session?.attributes.includes('httponly'), 'the session cookie is HttpOnly');
  t.ok(session?.attributes.includes('samesite=lax'), 'the session cookie is SameSite=Lax');
  t.ok(session?.attributes.includes('path=/'), 'the session cookie covers the whole site');
  t.notOk(session?.attributes.some((attribute) => attribute.startsWith('domain=')), 'the session cookie names no domain');
  t.notOk(session?.attributes.includes('secure'), 'no Secure flag over http');
});

t.test('https issuer adds HSTS and secure cookies', async (t) => {
  // The server listens on plain http on loopback, and only its issuer uses https, as behind a TLS proxy.
  const server = await startServer(t, { env: { ISSUER: 'https://auth.speedgate.test' } });
  const baseUrl = listeningUrl(server);

  const pages = await visitEveryPage(server, baseUrl);
  for (const page of pages) {
    checkPageHeaders(t, page);
    const hsts = page.headers.get('strict-transport-security') ?? '';
    const maxAge = Number(/max-age=(\d+)/.exec(hsts)?.[1] ?? 0);
    t.ok(maxAge >= 180 * 86_400, `${page.name}: HSTS for at least 180 days (${hsts})`);
  }
  const metadata = await fetch(`${baseUrl}/.well-known/oauth-authorization-server`);
  await metadata.arrayBuffer();
  t.match(metadata.headers.get('strict-transport-security') ?? '', /max-age=\d+/, 'JSON responses carry HSTS too');

  const email = `secure-${Date.now()}@example.com`;
  await createTestUser(server, email);
  const browser = new BrowserSession(baseUrl);
  const loginPage = await browser.get('/accounts/login/');
  await loginPage.arrayBuffer();
  const [csrfCookie] = readSetCookies(loginPage);
  t.equal(csrfCookie?.name, '__Host-sg_csrf', 'the CSRF binding cookie has the __Host- prefix');
  t.ok(csrfCookie?.attributes.includes('secure'), 'the CSRF cookie is Secure');
  t.ok(csrfCookie?.attributes.includes('httponly'), 'the CSRF cookie is HttpOnly');
  t.ok(csrfCookie?.attributes.includes('samesite=lax'), 'the CSRF cookie is SameSite=Lax');

  const login = await browser.logIn(email, PASSWORD);
  t.equal(login.status, 303, 'login works with the prefixed cookies');
  const cookies = readSetCookies(login);
  t.notOk(cookies.some((cookie) => cookie.name === 'sg_session'), 'no unprefixed session cookie');
  const session = cookies.find((cookie) => cookie.name === '__Host-sg_session');
  t.ok(session, 'the session cookie has the __Host- prefix');
  t.ok(session?.attributes.includes('secure'), 'the session cookie is Secure');
  t.ok(session?.attributes.includes('httponly'), 'the session cookie is HttpOnly');
  t.ok(session?.attributes.includes('samesite=lax'), 'the session cookie is SameSite=Lax');
  t.ok(session?.attributes.includes('path=/'), 'a __Host- cookie must have Path=/');
  t.notOk(session?.attributes.some((attribute) => attribute.startsWith('domain=')), 'a __Host- cookie must not name a domain');

  const tokens = await browser.get('/accounts/tokens/');
  t.equal(tokens.status, 200, 'the prefixed session cookie signs the user in');
  await tokens.arrayBuffer();
});
