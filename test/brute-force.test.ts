import { randomInt } from 'node:crypto';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { PASSWORD } from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { postFormFrom } from './helpers/source-address.ts';
import { basicAuthorization, createTestClient, createTestUser, postForm, startDevice } from './helpers/tokens.ts';

const WRONG_PASSWORD = 'not the password';
const WRONG_CODE = 'That code is not valid. Check the code shown on your device and try again.';
const CODES_BLOCKED = 'Too many wrong codes. Wait ten minutes and try again.';
const LOGIN_BLOCKED = 'Too many sign-in attempts. Try again in 15 minutes.';
const ADDRESS_BLOCKED = 'Too many failed sign-ins from your network. Try again in 15 minutes.';
const INCORRECT = 'The email address or password is incorrect.';
const OAUTH_BLOCKED = { error: 'invalid_request', error_description: 'Too many failed requests from this address; retry later' };
const INVALID_CLIENT = { error: 'invalid_client', error_description: 'Client authentication failed' };

/** Reads the message of a form page's error paragraph. */
function formError(html: string): string | undefined {
  return /<p class="error" role="alert"[^>]*>([^<]*)<\/p>/.exec(html)?.[1]?.replace(/&#39;/g, "'");
}

interface Attempt {
  status: number;
  retryAfter: string | null;
  error: string | undefined;
  elapsedMs: number;
}

async function attempt(response: Promise<Response>): Promise<Attempt> {
  const started = performance.now();
  const result = await response;
  const html = await result.text();
  return { status: result.status, retryAfter: result.headers.get('retry-after'), error: formError(html), elapsedMs: performance.now() - started };
}

/** Submits the login form of a browser that has loaded the login page, from 127.0.0.1. */
async function logIn(browser: BrowserSession, email: string, password: string): Promise<Attempt> {
  return attempt(browser.logIn(email, password));
}

/** Submits a login from another loopback address, with a CSRF token fetched from 127.0.0.1. */
async function logInFrom(server: TestServer, address: string, email: string, password: string): Promise<Attempt> {
  const browser = new BrowserSession(server.url);
  const page = await browser.page('/accounts/login/');
  const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  const started = performance.now();
  const response = await postFormFrom(address, `${server.url}/accounts/login/`, { csrf_token: page.csrfToken, email, password }, { cookie });
  const retryAfter = response.headers['retry-after'];
  return { status: response.status, retryAfter: typeof retryAfter === 'string' ? retryAfter : null, error: formError(response.body), elapsedMs: performance.now() - started };
}

async function signedInBrowser(server: TestServer): Promise<BrowserSession> {
  const user = await createTestUser(server);
  const browser = new BrowserSession(server.url);
  const login = await browser.logIn(user.email, PASSWORD);
  if (login.status !== 303) throw new Error(`login failed with ${login.status}`);
  return browser;
}

const deviceFormTokens = new WeakMap<BrowserSession, string>();

/** Enters a user code on the device page of a signed-in browser, loading the form once per browser. */
async function enterCode(browser: BrowserSession, userCode: string): Promise<Attempt> {
  let token = deviceFormTokens.get(browser);
  if (token === undefined) {
    token = (await browser.page('/o/device/')).csrfToken;
    deviceFormTokens.set(browser, token);
  }
  return attempt(browser.post('/o/device/', { csrf_token: token, user_code: userCode }));
}

/** Returns a user code that no device authorization has: the alphabet makes it well-formed. */
function guessCode(index: number): string {
  const letters = 'BCDFGHJKLMNPQRSTVWXZ';
  return `ZZZZ-${letters[index % 20]}${letters[Math.floor(index / 20) % 20]}ZZ`;
}

async function redisReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: 6379 });
    const done = (reachable: boolean) => {
      socket.destroy();
      resolve(reachable);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Guesses user codes: ten wrong ones per browser session, then 429. With
 * `perAddress`, two more sessions bring 127.0.0.1 to 30 wrong codes, after
 * which a fresh session is refused at once while 127.0.0.2 is not.
 */
async function checkDeviceCodeGuessing(t: Test, server: TestServer, perAddress: boolean): Promise<void> {
  const { client } = await createTestClient(server);
  const real = await startDevice(server, client.id);

  const first = await signedInBrowser(server);
  const guesses: [number, string | undefined][] = [];
  for (let index = 0; index < 10; index++) {
    const wrong = await enterCode(first, guessCode(index));
    guesses.push([wrong.status, wrong.error]);
  }
  t.strictSame(guesses, Array(10).fill([400, WRONG_CODE]), 'ten wrong codes in one session are each answered');
  const blocked = await enterCode(first, guessCode(10));
  t.equal(blocked.status, 429, 'the 11th guess in one session is refused');
  t.equal(blocked.error, CODES_BLOCKED);
  t.equal(blocked.retryAfter, '600');
  const realBlocked = await enterCode(first, real.userCode);
  t.equal(realBlocked.status, 429, 'even the right code is refused while blocked');
  if (!perAddress) return;

  for (const session of [1, 2]) {
    const browser = await signedInBrowser(server);
    for (let index = 0; index < 10; index++) {
      const wrong = await enterCode(browser, guessCode(session * 10 + index));
      if (wrong.status !== 400) t.fail(`session ${session + 1}, guess ${index + 1} got ${wrong.status}`);
    }
  }
  const fourth = await signedInBrowser(server);
  const addressBlocked = await enterCode(fourth, real.userCode);
  t.equal(addressBlocked.status, 429, 'a fresh session from the same address is refused after 30 wrong codes');
  t.equal(addressBlocked.error, CODES_BLOCKED);

  const token = deviceFormTokens.get(fourth) ?? '';
  const cookie = [...fourth.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  const elsewhere = await postFormFrom('127.0.0.2', `${server.url}/o/device/`, { csrf_token: token, user_code: real.userCode }, { cookie });
  t.equal(elsewhere.status, 200, 'the same session from 127.0.0.2 reaches the confirmation page');
  t.match(elsewhere.body, 'Approve this device?');

  server.clock.advance(601);
  const afterWindow = await enterCode(fourth, real.userCode);
  t.equal(afterWindow.status, 200, 'the right code works from 127.0.0.1 once the window has passed');
  t.equal(afterWindow.error, undefined);
}

// One server for the device page, signup and login limits: each test uses its own
// accounts, and the address-wide login test sprays from an address of its own.
const LOGIN_DELAY_MS = 1000;
const server = await startServer(t, { env: { LOGIN_FAILURE_DELAY_MS: String(LOGIN_DELAY_MS), SIGNUP_RATE_LIMIT: '2' } });

t.test('device code guessing is limited', async (t) => {
  await checkDeviceCodeGuessing(t, server, true);
});

t.test('signup is limited per address', async (t) => {
  await checkSignupLimit(t, server);
});

t.test('login slows accounts without lockout', async (t) => {
  const delayMs = LOGIN_DELAY_MS;
  const email = `slow-${Date.now()}@example.com`;
  await createTestUser(server, email);

  const browser = new BrowserSession(server.url);
  const failures: Attempt[] = [];
  for (let index = 0; index < 10; index++) failures.push(await logIn(browser, email, WRONG_PASSWORD));
  t.strictSame(
    failures.map((failure) => [failure.status, failure.error]),
    Array(10).fill([401, INCORRECT]),
    'ten wrong passwords are each answered',
  );
  // The account has five failures after the fifth attempt, so attempts six to ten wait.
  for (const [index, failure] of failures.entries()) {
    if (index >= 5) t.ok(failure.elapsedMs >= delayMs, `attempt ${index + 1} waited at least ${delayMs} ms (${Math.round(failure.elapsedMs)} ms)`);
  }
  const undelayed = Math.min(...failures.slice(0, 5).map((failure) => failure.elapsedMs));
  t.ok(undelayed < delayMs, `the first five attempts were not slowed (fastest ${Math.round(undelayed)} ms)`);

  const locked = await logIn(browser, email, PASSWORD);
  t.equal(locked.status, 429, 'the 11th attempt from this address for this account is refused');
  t.equal(locked.error, LOGIN_BLOCKED);
  t.ok(Number(locked.retryAfter) > 0 && Number(locked.retryAfter) <= 900, `Retry-After ${locked.retryAfter}`);

  for (let index = 0; index < 2; index++) {
    const failure = await logInFrom(server, '127.0.0.3', email, WRONG_PASSWORD);
    t.equal(failure.status, 401, `failure ${index + 1} from 127.0.0.3 is counted, not refused`);
  }

  const owner = await logInFrom(server, '127.0.0.2', email, PASSWORD);
  t.equal(owner.status, 303, 'after 12 failures the owner still signs in from another address');
  t.ok(owner.elapsedMs >= delayMs, `the owner's sign-in was slowed too (${Math.round(owner.elapsedMs)} ms)`);
});

t.test('login blocks an address after 50 failures', async (t) => {
  const email = `victim-${Date.now()}@example.com`;
  await createTestUser(server, email);

  // Ten accounts, five failures each from 127.0.0.4: no account reaches its own limit of ten,
  // and none reaches the five failures that slow an account down.
  const emails = Array.from({ length: 10 }, (_, index) => `spray-${index}-${Date.now()}@example.com`);
  const statuses: number[] = [];
  for (let batch = 0; batch < 5; batch++) {
    const results = await Promise.all(emails.map((address) => logInFrom(server, '127.0.0.4', address, WRONG_PASSWORD)));
    statuses.push(...results.map((result) => result.status));
  }
  t.strictSame(statuses, Array(50).fill(401), '50 failures across ten accounts are each answered');

  const blocked = await logInFrom(server, '127.0.0.4', email, PASSWORD);
  t.equal(blocked.status, 429, 'the next sign-in from this address is refused, right password or not');
  t.equal(blocked.error, ADDRESS_BLOCKED);
  t.equal(blocked.retryAfter, '900');

  const elsewhere = await logIn(new BrowserSession(server.url), email, PASSWORD);
  t.equal(elsewhere.status, 303, 'the account owner signs in from another address');
});

async function checkOAuthFailureLimit(t: Test, server: TestServer): Promise<void> {
  const service = await createTestClient(server, { name: 'Guessed service', grantTypes: ['client_credentials'], confidential: true });
  const tokenUrl = `${server.url}/o/token/`;
  const wrong = { authorization: basicAuthorization(service.client.id, 'sgs_wrong-guess') };
  const right = { authorization: basicAuthorization(service.client.id, service.clientSecret ?? '') };

  for (let index = 0; index < 5; index++) {
    const guess = await postForm(tokenUrl, { grant_type: 'client_credentials' }, wrong);
    t.equal(guess.status, 401, `wrong secret ${index + 1} is answered`);
    t.strictSame(guess.body, INVALID_CLIENT);
  }
  const sixth = await postForm(tokenUrl, { grant_type: 'client_credentials' }, wrong);
  t.equal(sixth.status, 429, 'the 6th wrong secret is refused');
  t.strictSame(sixth.body, OAUTH_BLOCKED);
  const retryAfter = Number(sixth.headers.get('retry-after'));
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After is within the one-minute window (${retryAfter})`);

  const correct = await postForm(tokenUrl, { grant_type: 'client_credentials' }, right);
  t.equal(correct.status, 429, 'the right secret from a blocked address is refused too');

  const elsewhere = await postFormFrom('127.0.0.2', tokenUrl, { grant_type: 'client_credentials' }, right);
  t.equal(elsewhere.status, 200, 'another address is not blocked');
}

t.test('OAuth guessing is limited', async (t) => {
  const oauthServer = await startServer(t, { env: { OAUTH_FAILURE_LIMIT: '5' } });
  await checkOAuthFailureLimit(t, oauthServer);

  // Wrong grants count as guesses too. 127.0.0.1 is blocked by now, so they come from 127.0.0.5.
  const { client } = await createTestClient(oauthServer);
  const tokenUrl = `${oauthServer.url}/o/token/`;
  const expected = { error: 'invalid_grant', error_description: 'The refresh_token is invalid, expired or revoked' };
  for (let index = 0; index < 5; index++) {
    const guess = await postFormFrom('127.0.0.5', tokenUrl, { grant_type: 'refresh_token', refresh_token: `sgr_guess-${index}`, client_id: client.id });
    t.equal(guess.status, 400, `wrong refresh token ${index + 1} is answered`);
    t.strictSame(JSON.parse(guess.body), expected);
  }
  const sixth = await postFormFrom('127.0.0.5', tokenUrl, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: 'guess', client_id: client.id });
  t.equal(sixth.status, 429, 'the 6th guess, of any grant, is refused');
  t.strictSame(JSON.parse(sixth.body), OAUTH_BLOCKED);
  t.ok(Number(sixth.headers['retry-after']) >= 1, 'with Retry-After');

  const device = await postFormFrom('127.0.0.5', `${oauthServer.url}/o/device-authorization/`, { client_id: client.id });
  t.equal(device.status, 429, 'the block covers every OAuth endpoint');
});

async function checkSignupLimit(t: Test, server: TestServer): Promise<void> {
  const stamp = `${Date.now()}-${randomInt(1_000_000)}`;
  for (const index of [1, 2]) {
    const created = await new BrowserSession(server.url).signUp(`signup-${index}-${stamp}@example.com`, PASSWORD);
    t.equal(created.status, 303, `signup ${index} succeeds`);
  }
  const third = await attempt(new BrowserSession(server.url).signUp(`signup-3-${stamp}@example.com`, PASSWORD));
  t.equal(third.status, 429, 'the third signup from one address in an hour is refused');
  t.equal(third.error, 'Too many accounts created from your network. Try again later.');
  t.ok(Number(third.retryAfter) > 0 && Number(third.retryAfter) <= 3600, `Retry-After ${third.retryAfter}`);

  const users = await server.app.speedgate.db.selectFrom('users').select('id').where('email', '=', `signup-3-${stamp}@example.com`).execute();
  t.equal(users.length, 0, 'no account was created');
}

const redis = await redisReachable();

t.test('limits hold with Redis counters', { skip: redis ? false : 'no Redis at 127.0.0.1:6379' }, async (t) => {
  const env = { REDIS_URL: 'redis://127.0.0.1:6379', SIGNUP_RATE_LIMIT: '2', OAUTH_FAILURE_LIMIT: '5', LOGIN_FAILURE_DELAY_MS: '0' };
  const redisServer = await startServer(t, { env });
  // Redis keys name the counter's window, which follows the server's clock: moving the
  // clock to a random future day gives this run windows no other run shares, so no flush is needed.
  redisServer.clock.advance(randomInt(1, 100_000) * 86_400);

  await t.test('signup limit', (t) => checkSignupLimit(t, redisServer));
  await t.test('device code limit', (t) => checkDeviceCodeGuessing(t, redisServer, false));
  await t.test('login limit', async (t) => {
    const email = `redis-${Date.now()}@example.com`;
    await createTestUser(redisServer, email);
    const browser = new BrowserSession(redisServer.url);
    for (let index = 0; index < 10; index++) await logIn(browser, email, WRONG_PASSWORD);
    const locked = await logIn(browser, email, PASSWORD);
    t.equal(locked.status, 429, 'the 11th attempt for one account from one address is refused');
    // Redis windows are aligned to the clock, so the wait is at most the window, not always all of it.
    t.match(locked.error, /^Too many sign-in attempts\. Try again in \d+ minutes\.$/);
  });
  // Last, because it blocks 127.0.0.1 at this server's OAuth endpoints.
  await t.test('OAuth failure limit', (t) => checkOAuthFailureLimit(t, redisServer));
});
