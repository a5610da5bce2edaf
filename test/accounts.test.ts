import type { AddressInfo } from 'node:net';
import t from 'tap';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { TEST_PASSWORD, createTestUser } from './helpers/tokens.ts';

let server: TestServer;

t.before(async () => {
  server = await startServer(t);
});

const LOGIN_FAILED = 'The email address or password is incorrect.';

let emailCount = 0;
function newEmail(): string {
  emailCount += 1;
  return `person${emailCount}-${Date.now()}@example.com`;
}

async function countUsers(email: string): Promise<number> {
  const { db } = server.app.speedgate;
  const rows = await db.selectFrom('users').select('id').where('email', '=', email.trim().toLowerCase()).execute();
  return rows.length;
}

/** Submits the login form with `next` as the page would carry it. */
async function logInWithNext(browser: BrowserSession, email: string, next: string): Promise<Response> {
  const { csrfToken } = await browser.page('/accounts/login/');
  return browser.post('/accounts/login/', { csrf_token: csrfToken, email, password: TEST_PASSWORD, next });
}

function sessionCookieHeader(response: Response, name: string): string | undefined {
  return response.headers.getSetCookie().find((header) => header.startsWith(`${name}=`));
}

t.test('signup rejects a bad email', async (t) => {
  const browser = new BrowserSession(server.url);

  for (const email of ['not-an-email', 'ada@example', 'ada @example.com', `${'a'.repeat(250)}@example.com`]) {
    const response = await browser.signUp(email, TEST_PASSWORD);
    t.equal(response.status, 400, email);
    t.match(await response.text(), 'Enter a valid email address, such as ada@example.com', email);
    t.equal(await countUsers(email), 0, `${email}: no user is stored`);
  }
  t.notOk(browser.cookies.has('sg_session'), 'no session is started');
});

t.test('signup rejects a short password', async (t) => {
  const browser = new BrowserSession(server.url);
  const message = 'The password must be 8 to 256 characters long';

  for (const [label, password] of [
    ['seven characters', 'abcdefg'],
    ['257 characters', 'a'.repeat(257)],
  ]) {
    const email = newEmail();
    const response = await browser.signUp(email, password);
    t.equal(response.status, 400, label);
    t.match(await response.text(), message, label);
    t.equal(await countUsers(email), 0, `${label}: no user is stored`);
  }
});

t.test('signup rejects a duplicate email', async (t) => {
  const email = newEmail();
  const first = await new BrowserSession(server.url).signUp(email, TEST_PASSWORD);
  t.equal(first.status, 303);

  const again = await new BrowserSession(server.url).signUp(` ${email.toUpperCase()} `, 'another password');
  t.equal(again.status, 400);
  t.match(await again.text(), 'An account with this email address already exists');
  t.equal(await countUsers(email), 1);
});

t.test('signup starts a session', async (t) => {
  const browser = new BrowserSession(server.url);
  const email = newEmail();

  const response = await browser.signUp(email, TEST_PASSWORD, 'Ada Lovelace');
  t.equal(response.status, 303);
  t.equal(response.headers.get('location'), '/');

  const home = await browser.page('/');
  t.match(home.html, email);
});

t.test('login failure shows one message', async (t) => {
  const user = await createTestUser(server);

  for (const [label, email, password] of [
    ['wrong password', user.email, 'wrong password'],
    ['unknown email', newEmail(), TEST_PASSWORD],
    ['empty password', user.email, ''],
  ]) {
    const browser = new BrowserSession(server.url);
    const response = await browser.logIn(email, password);
    t.equal(response.status, 401, label);
    t.match(await response.text(), LOGIN_FAILED, label);
    t.notOk(browser.cookies.has('sg_session'), `${label}: no session is started`);
  }
});

t.test('login keeps the session cookie', async (t) => {
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);

  const response = await browser.logIn(user.email.toUpperCase(), TEST_PASSWORD);
  t.equal(response.status, 303, 'the email is matched case-insensitively');
  t.ok(browser.cookies.has('sg_session'));

  const device = await browser.get('/o/device/');
  t.equal(device.status, 200, 'the session opens a page that needs login');
});

t.test('logout ends the session', async (t) => {
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);
  await browser.logIn(user.email, TEST_PASSWORD);
  const sessionCookie = browser.cookies.get('sg_session') ?? '';

  const logout = await browser.submit('/accounts/logout/', {});
  t.equal(logout.status, 303);
  t.equal(logout.headers.get('location'), '/accounts/login/');
  t.notOk(browser.cookies.has('sg_session'), 'the cookie is cleared');

  const { db } = server.app.speedgate;
  const sessions = await db.selectFrom('sessions').select('id_hash').where('user_id', '=', user.id).execute();
  t.equal(sessions.length, 0, 'the session row is deleted');

  // A copy of the old cookie no longer signs anyone in.
  const stale = new BrowserSession(server.url);
  stale.cookies.set('sg_session', sessionCookie);
  const device = await stale.get('/o/device/');
  t.equal(device.status, 303);
  t.match(device.headers.get('location'), /^\/accounts\/login\//);
});

t.test('logout without CSRF token fails', async (t) => {
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);
  await browser.logIn(user.email, TEST_PASSWORD);

  const logout = await browser.post('/accounts/logout/', {});
  t.equal(logout.status, 403);

  const device = await browser.get('/o/device/');
  t.equal(device.status, 200, 'the session continues');
});

t.test('next open redirects land on root', async (t) => {
  const user = await createTestUser(server);
  const hostile = [
    '//evil.example',
    '/\\evil.example',
    '\\\\evil.example',
    '/\\/evil.example',
    'https://evil.example',
    'http:evil.example',
    'javascript:alert(1)',
    'evil.example/path',
  ];

  for (const next of hostile) {
    const browser = new BrowserSession(server.url);
    const login = await logInWithNext(browser, user.email, next);
    t.equal(login.status, 303, `login with next=${next}`);
    t.equal(login.headers.get('location'), '/', `login with next=${next}`);

    const again = await browser.get(`/accounts/login/?next=${encodeURIComponent(next)}`);
    t.equal(again.headers.get('location'), '/', `signed-in visit with next=${next}`);
  }

  const tab = await new BrowserSession(server.url).get('/accounts/login/?next=/%09/evil.example');
  t.equal(tab.status, 200, 'a next with a tab renders the form');
  t.match(await tab.text(), 'name="next" value="/"', 'and falls back to /');
});

t.test('local next is kept', async (t) => {
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);

  const login = await logInWithNext(browser, user.email, '/o/device/?user_code=BCDF-GHJK');
  t.equal(login.status, 303);
  t.equal(login.headers.get('location'), '/o/device/?user_code=BCDF-GHJK');
});

t.test('signup next is checked too', async (t) => {
  const browser = new BrowserSession(server.url);
  const { csrfToken } = await browser.page('/accounts/signup/');
  const response = await browser.post('/accounts/signup/', {
    csrf_token: csrfToken,
    email: newEmail(),
    password: TEST_PASSWORD,
    next: '//evil.example',
  });

  t.equal(response.status, 303);
  t.equal(response.headers.get('location'), '/');
});

t.test('session cookie is HttpOnly and Lax', async (t) => {
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);
  const response = await browser.logIn(user.email, TEST_PASSWORD);

  const cookie = sessionCookieHeader(response, 'sg_session');
  t.ok(cookie, 'a session cookie is set');
  const attributes = (cookie ?? '').split(';').map((part) => part.trim().toLowerCase());
  t.ok(attributes.includes('httponly'), 'HttpOnly');
  t.ok(attributes.includes('samesite=lax'), 'SameSite=Lax');
  t.ok(attributes.includes('path=/'), 'Path=/');
  t.notOk(attributes.includes('secure'), 'not Secure on a plain http issuer');
});

t.test('session cookie is Secure under https', async (t) => {
  // The issuer only names the public URL, and requests still go to the loopback port.
  const secure = await startServer(t, { env: { ISSUER: 'https://auth.speedgate.test' } });
  const port = (secure.app.server.address() as AddressInfo).port;
  const user = await createTestUser(secure);
  const browser = new BrowserSession(`http://127.0.0.1:${port}`);

  const response = await browser.logIn(user.email, TEST_PASSWORD);
  t.equal(response.status, 303);
  const cookie = sessionCookieHeader(response, '__Host-sg_session');
  t.ok(cookie, 'the cookie has the __Host- prefix');
  const attributes = (cookie ?? '').split(';').map((part) => part.trim().toLowerCase());
  t.ok(attributes.includes('secure'), 'Secure');
  t.ok(attributes.includes('httponly'), 'HttpOnly');
  t.ok(attributes.includes('samesite=lax'), 'SameSite=Lax');
  t.notOk(attributes.some((attribute) => attribute.startsWith('domain=')), 'no Domain attribute');
});

t.test('password is stored as scrypt hash', async (t) => {
  const first = await createTestUser(server);
  const second = await createTestUser(server);

  const format = /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/;
  t.match(first.password_hash, format);
  t.notMatch(first.password_hash, TEST_PASSWORD);
  t.not(first.password_hash, second.password_hash, 'each hash has its own salt');
});

t.test('login is rate limited', async (t) => {
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);

  for (let attempt = 1; attempt <= 10; attempt++) {
    const response = await browser.logIn(user.email, 'wrong password');
    t.equal(response.status, 401, `failed attempt ${attempt}`);
  }

  const blocked = await browser.logIn(user.email, 'wrong password');
  t.equal(blocked.status, 429);
  t.match(await blocked.text(), 'Too many sign-in attempts. Try again in 15 minutes.');
  const retryAfter = Number(blocked.headers.get('retry-after'));
  t.ok(retryAfter > 0 && retryAfter <= 900, `Retry-After ${retryAfter} is 1 to 900 s`);

  const right = await browser.logIn(user.email, TEST_PASSWORD);
  t.equal(right.status, 429, 'the right password is blocked too');
  t.notOk(browser.cookies.has('sg_session'));

  const other = await createTestUser(server);
  const otherLogin = await new BrowserSession(server.url).logIn(other.email, TEST_PASSWORD);
  t.equal(otherLogin.status, 303, 'another account from the same address is not blocked');

  server.clock.advance(15 * 60);
  const later = await browser.logIn(user.email, TEST_PASSWORD);
  t.equal(later.status, 303, 'the limit lifts after 15 minutes');
});

t.test('successful logins are not limited', async (t) => {
  const user = await createTestUser(server);

  for (let attempt = 1; attempt <= 12; attempt++) {
    const response = await new BrowserSession(server.url).logIn(user.email, TEST_PASSWORD);
    t.equal(response.status, 303, `login ${attempt}`);
  }
});
