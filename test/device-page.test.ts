import t from 'tap';
import { findDeviceCode, normalizeUserCode } from '../src/oauth/device-codes.ts';
import { BrowserSession, readCsrfToken } from './helpers/browser-session.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import {
  TEST_PASSWORD,
  createTestClient,
  createTestUser,
  redeemDevice,
  startDevice,
  type DeviceStart,
} from './helpers/tokens.ts';

const WRONG_CODE = 'That code is not valid. Check the code shown on your device and try again.';
const EXPIRED_CODE = 'That code has expired. Start the sign-in on your device again to get a new code.';
const USED_CODE = 'That code has already been used. Start the sign-in on your device again if you need to.';
const TOO_MANY = 'Too many wrong codes. Wait ten minutes and try again.';
const CSRF_FAILED = 'The form has expired or was not sent from this site. Reload the page and try again.';

// The rate-limit tests start servers of their own, so their wrong-code counters reach no other
// test. The rest share one server and enter too few wrong codes to be limited.
let shared: TestServer;

t.before(async () => {
  shared = await startServer(t);
});

async function signedIn(server: TestServer, email?: string): Promise<BrowserSession> {
  const user = await createTestUser(server, email);
  const browser = new BrowserSession(server.url);
  const login = await browser.logIn(user.email, TEST_PASSWORD);
  if (login.status !== 303) throw new Error(`login failed with ${login.status}`);
  return browser;
}

async function newDeviceCode(server: TestServer): Promise<DeviceStart> {
  const { client } = await createTestClient(server);
  return startDevice(server, client.id, { scope: 'read:profile' });
}

async function deviceStatus(server: TestServer, start: DeviceStart): Promise<string | undefined> {
  const row = await findDeviceCode(server.app.speedgate.db, normalizeUserCode(start.userCode) ?? '');
  return row?.status;
}

async function enterCode(browser: BrowserSession, userCode: string, action?: string) {
  const fields: Record<string, string> = { user_code: userCode };
  if (action !== undefined) fields.action = action;
  const response = await browser.submit('/o/device/', fields);
  return { status: response.status, headers: response.headers, html: await response.text() };
}

t.test('login is required first', async (t) => {
  const server = shared;
  const browser = new BrowserSession(server.url);

  const page = await browser.get('/o/device/?user_code=BCDF-GHJK');
  t.equal(page.status, 303);
  t.equal(page.headers.get('location'), '/accounts/login/?next=%2Fo%2Fdevice%2F%3Fuser_code%3DBCDF-GHJK');

  const post = await browser.post('/o/device/', { user_code: 'BCDF-GHJK', action: 'approve' });
  t.equal(post.status, 303, 'a form post without a session is sent to log in too');
  t.match(post.headers.get('location'), /^\/accounts\/login\/\?next=%2Fo%2Fdevice%2F/);
});

t.test('login returns to the device page', async (t) => {
  const server = shared;
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);

  const next = '/o/device/?user_code=BCDF-GHJK';
  const loginPage = await browser.page(`/accounts/login/?next=${encodeURIComponent(next)}`);
  const login = await browser.post('/accounts/login/', {
    csrf_token: loginPage.csrfToken,
    email: user.email,
    password: TEST_PASSWORD,
    next: next,
  });
  t.equal(login.status, 303);
  t.equal(login.headers.get('location'), next);

  const page = await browser.page(next);
  t.equal(page.status, 200);
  t.match(page.html, /value="BCDF-GHJK"/, 'the code from the link is filled in');
});

t.test('wrong code shows an error', async (t) => {
  const server = shared;
  const browser = await signedIn(server);

  for (const input of ['BBBB-BBBB', 'hello', 'AEIO-UAEI', 'BCDF-GHJK-L']) {
    const response = await enterCode(browser, input);
    t.equal(response.status, 400, input);
    t.match(response.html, WRONG_CODE, input);
    t.equal(response.headers.get('cache-control'), 'no-store', input);
  }
});

t.test('expired code shows an error', async (t) => {
  const server = shared;
  const browser = await signedIn(server);
  const start = await newDeviceCode(server);

  server.clock.advance(900);
  const response = await enterCode(browser, start.userCode);
  t.equal(response.status, 400);
  t.match(response.html, EXPIRED_CODE);

  const approve = await enterCode(browser, start.userCode, 'approve');
  t.equal(approve.status, 400);
  t.equal(await deviceStatus(server, start), 'pending', 'an expired code cannot be approved');
});

t.test('used code shows an error', async (t) => {
  const server = shared;
  const browser = await signedIn(server);
  const start = await newDeviceCode(server);

  const approve = await enterCode(browser, start.userCode, 'approve');
  t.equal(approve.status, 200);

  const again = await enterCode(browser, start.userCode);
  t.equal(again.status, 400);
  t.match(again.html, USED_CODE);

  const deny = await enterCode(browser, start.userCode, 'deny');
  t.equal(deny.status, 400, 'a decided code cannot be overturned');
  t.equal(await deviceStatus(server, start), 'approved');
});

t.test('code works lower case without dash', async (t) => {
  const server = shared;
  const browser = await signedIn(server);
  const start = await newDeviceCode(server);
  const plain = start.userCode.replace('-', '').toLowerCase();

  const review = await enterCode(browser, plain);
  t.equal(review.status, 200);
  t.match(review.html, 'Approve this device?');
  t.match(review.html, start.userCode, 'the code is shown as XXXX-XXXX');
  t.match(review.html, 'Read your name and email address');

  const spaced = await enterCode(browser, ` ${plain.slice(0, 4)} ${plain.slice(4)} `);
  t.equal(spaced.status, 200, 'spaces are ignored');

  const approve = await enterCode(browser, plain, 'approve');
  t.equal(approve.status, 200);
  t.match(approve.html, 'Device connected');
  t.equal(await deviceStatus(server, start), 'approved');
});

t.test('deny records the decision', async (t) => {
  const server = shared;
  const browser = await signedIn(server);
  const { client } = await createTestClient(server);
  const start = await startDevice(server, client.id);

  const deny = await enterCode(browser, start.userCode, 'deny');
  t.equal(deny.status, 200);
  t.match(deny.html, 'Request denied');

  const poll = await redeemDevice(server, client.id, start.deviceCode);
  t.same(poll.body, { error: 'access_denied', error_description: 'The user denied the authorization request' });
});

t.test('wrong codes are rate limited', async (t) => {
  const server = await startServer(t);
  const browser = await signedIn(server);
  const start = await newDeviceCode(server);

  for (let attempt = 1; attempt <= 10; attempt++) {
    const response = await enterCode(browser, 'BBBB-BBBB');
    t.equal(response.status, 400, `wrong code ${attempt} is answered normally`);
  }

  const blocked = await enterCode(browser, 'BBBB-BBBB');
  t.equal(blocked.status, 429);
  t.match(blocked.html, TOO_MANY);
  const retryAfter = Number(blocked.headers.get('retry-after'));
  t.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 600, `Retry-After ${retryAfter} is 1 to 600 s`);

  const right = await enterCode(browser, start.userCode, 'approve');
  t.equal(right.status, 429, 'a right code is blocked too');
  t.equal(await deviceStatus(server, start), 'pending');

  server.clock.advance(600);
  const later = await enterCode(browser, start.userCode, 'approve');
  t.equal(later.status, 200, 'the limit lifts after ten minutes');
  t.equal(await deviceStatus(server, start), 'approved');
});

t.test('address limit spans sessions', async (t) => {
  const server = await startServer(t);
  const email = `spread-${Date.now()}@example.com`;
  await createTestUser(server, email);

  for (let session = 1; session <= 3; session++) {
    const browser = new BrowserSession(server.url);
    await browser.logIn(email, TEST_PASSWORD);
    for (let attempt = 1; attempt <= 10; attempt++) await enterCode(browser, 'BBBB-BBBB');
  }

  const fresh = new BrowserSession(server.url);
  await fresh.logIn(email, TEST_PASSWORD);
  const blocked = await enterCode(fresh, 'BBBB-BBBB');
  t.equal(blocked.status, 429, 'a new session from the same address is blocked');
  t.match(blocked.html, TOO_MANY);
});

t.test('missing CSRF token is rejected', async (t) => {
  const server = shared;
  const browser = await signedIn(server);
  const start = await newDeviceCode(server);

  const response = await browser.post('/o/device/', { user_code: start.userCode, action: 'approve' });
  t.equal(response.status, 403);
  t.match(await response.text(), CSRF_FAILED);
  t.equal(await deviceStatus(server, start), 'pending', 'the code is not approved');
});

t.test('wrong CSRF token is rejected', async (t) => {
  const server = shared;
  const victim = await signedIn(server);
  const attacker = await signedIn(server);
  const start = await newDeviceCode(server);

  // A token that is valid, but for another browser's session.
  const attackerToken = readCsrfToken((await attacker.page('/o/device/')).html);
  t.not(attackerToken, '');

  for (const [label, token] of [
    ['token of another session', attackerToken],
    ['made-up token', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
  ]) {
    const response = await victim.post('/o/device/', { csrf_token: token, user_code: start.userCode, action: 'approve' });
    t.equal(response.status, 403, label);
    t.match(await response.text(), CSRF_FAILED, label);
  }
  t.equal(await deviceStatus(server, start), 'pending', 'the code is not approved');

  const row = await findDeviceCode(server.app.speedgate.db, normalizeUserCode(start.userCode) ?? '');
  t.equal(row?.user_id, null, 'no user is recorded');
});

t.test('CSRF failure counts no wrong code', async (t) => {
  const server = shared;
  const browser = await signedIn(server);

  for (let attempt = 1; attempt <= 12; attempt++) {
    await browser.post('/o/device/', { user_code: 'BBBB-BBBB' });
  }
  const response = await enterCode(browser, 'BBBB-BBBB');
  t.equal(response.status, 400, 'rejected forms did not use up the wrong-code allowance');
});
