import t, { type Test } from 'tap';
import { createPat } from '../src/accounts/personal-access-tokens.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { randomToken } from '../src/oauth/secrets.ts';
import {
  authorizationParameters,
  authorizePath,
  createPkce,
  createSignedInUser,
  obtainCode,
  PASSWORD,
  readHiddenFields,
  REDIRECT_URI,
  registerCodeClient,
} from './helpers/authorization.ts';
import { BrowserSession, readCsrfToken } from './helpers/browser-session.ts';
import { readErrorPage } from './helpers/code-flow.ts';
import { startServer } from './helpers/server.ts';
import { snapshotTables } from './helpers/table-snapshot.ts';
import { createTestClient, createTestUser, startDevice } from './helpers/tokens.ts';

const CSRF_MESSAGE = 'The form has expired or was not sent from this site. Reload the page and try again.';

const server = await startServer(t);
const { db, scopes } = server.app.speedgate;
const origin = new URL(server.url).origin;

// The victim: signed in, with a token, an owned application, an authorized app and a pending device code.
const victim = await createSignedInUser(server);
// The attacker: signed in elsewhere, holding valid CSRF tokens of their own.
const attacker = await createSignedInUser(server);
const attackerToken = (await attacker.browser.page('/accounts/tokens/')).csrfToken;

const pat = await createPat(db, scopes, victim.user, { name: 'victim token', scopes: ['read:profile'], expiresAt: null }, server.clock.now());
const owned = await registerClient(
  db,
  scopes,
  { name: 'Victim app', grantTypes: ['authorization_code'], redirectUris: [REDIRECT_URI], confidential: true, registrationType: 'operator', ownerId: victim.user.id },
  server.clock.now(),
);
const { client: codeClient } = await registerCodeClient(server);
await obtainCode(victim.browser, codeClient.id);
const { client: deviceClient } = await createTestClient(server);
const pending = await startDevice(server, deviceClient.id);

/** How the CSRF token of a forged form is wrong. */
const FORGERIES: { name: string; token: (own: string) => string | undefined }[] = [
  { name: 'missing', token: () => undefined },
  { name: 'empty', token: () => '' },
  { name: 'wrong', token: () => randomToken(32) },
  { name: 'truncated', token: (own) => own.slice(0, -1) },
  { name: "another session's", token: () => attackerToken },
];

async function expectRejected(t: Test, response: Response, label: string): Promise<void> {
  const html = await response.text();
  t.equal(response.status, 403, `${label}: 403`);
  t.equal(readErrorPage(html), CSRF_MESSAGE, `${label}: the page explains the rejection`);
  t.equal(response.headers.get('location'), null, `${label}: no redirect`);
}

interface FormCase {
  name: string;
  /** The browser that submits: the victim's, or an anonymous one for login and signup. */
  browser: () => Promise<BrowserSession>;
  /** A page of that browser whose form carries a valid token, to forge variants of. */
  page: string;
  action: string;
  fields: Record<string, string>;
}

const anonymousBrowser = async () => {
  const browser = new BrowserSession(server.url);
  await (await browser.get('/accounts/login/')).arrayBuffer();
  return browser;
};
const anonymousToken = readCsrfToken(await (await (await anonymousBrowser()).get('/accounts/login/')).text());

// prompt=consent shows the page although the victim approved this client before.
const consentFields = {
  ...authorizationParameters(codeClient.id, createPkce(), { scope: 'read:profile read:teams', prompt: 'consent' }),
  action: 'approve',
  'grant:read:profile': 'on',
  'grant:read:teams': 'on',
};

const FORMS: FormCase[] = [
  { name: 'login', browser: anonymousBrowser, page: '/accounts/login/', action: '/accounts/login/', fields: { email: victim.user.email, password: PASSWORD } },
  { name: 'signup', browser: anonymousBrowser, page: '/accounts/signup/', action: '/accounts/signup/', fields: { email: 'forged@example.com', password: PASSWORD } },
  { name: 'logout', browser: async () => victim.browser, page: '/accounts/logout/', action: '/accounts/logout/', fields: {} },
  { name: 'device entry', browser: async () => victim.browser, page: '/o/device/', action: '/o/device/', fields: { user_code: pending.userCode } },
  { name: 'device approval', browser: async () => victim.browser, page: '/o/device/', action: '/o/device/', fields: { user_code: pending.userCode, action: 'approve' } },
  { name: 'consent', browser: async () => victim.browser, page: authorizePath(consentFields), action: '/o/authorize/', fields: consentFields },
  { name: 'token creation', browser: async () => victim.browser, page: '/accounts/tokens/', action: '/accounts/tokens/', fields: { name: 'forged', 'scope:read:profile': 'on', expires: '30' } },
  { name: 'token revocation', browser: async () => victim.browser, page: `/accounts/tokens/${pat.row.id}/revoke/`, action: `/accounts/tokens/${pat.row.id}/revoke/`, fields: {} },
  { name: 'application revocation', browser: async () => victim.browser, page: '/accounts/applications/', action: '/accounts/applications/revoke/', fields: { client_id: codeClient.id } },
  {
    name: 'developer creation',
    browser: async () => victim.browser,
    page: '/accounts/developer/',
    action: '/accounts/developer/',
    fields: { name: 'Forged app', redirect_uris: 'https://evil.example/cb', 'grant:authorization_code': 'on', client_type: 'confidential' },
  },
  {
    name: 'developer edit',
    browser: async () => victim.browser,
    page: `/accounts/developer/${owned.client.id}/`,
    action: `/accounts/developer/${owned.client.id}/`,
    fields: { name: 'Hijacked', redirect_uris: 'https://evil.example/cb', 'grant:authorization_code': 'on' },
  },
  { name: 'developer secret', browser: async () => victim.browser, page: `/accounts/developer/${owned.client.id}/`, action: `/accounts/developer/${owned.client.id}/secret/`, fields: {} },
  { name: 'developer deletion', browser: async () => victim.browser, page: `/accounts/developer/${owned.client.id}/delete/`, action: `/accounts/developer/${owned.client.id}/delete/`, fields: {} },
];

for (const form of FORMS) {
  t.test(`forged ${form.name} form is rejected`, async (t) => {
    const browser = await form.browser();
    const page = await browser.page(form.page);
    t.equal(page.status, 200, 'the form page loads');
    t.not(page.csrfToken, '', 'the form page carries a token');
    const isAnonymous = form.name === 'login' || form.name === 'signup';

    for (const forgery of FORGERIES) {
      const before = await snapshotTables(db);
      const token = forgery.name === "another session's" && isAnonymous ? anonymousToken : forgery.token(page.csrfToken);
      const fields = token === undefined ? form.fields : { ...form.fields, csrf_token: token };
      await expectRejected(t, await browser.post(form.action, fields), `${forgery.name} token`);
      t.strictSame(await snapshotTables(db), before, `${forgery.name} token: no table changed`);
    }

    const signedIn = await victim.browser.get('/accounts/tokens/');
    await signedIn.arrayBuffer();
    t.equal(signedIn.status, 200, 'the victim is still signed in');
  });
}

t.test('forged forms left state intact', async (t) => {
  const token = await db.selectFrom('personal_access_tokens').select('revoked_at').where('id', '=', pat.row.id).executeTakeFirstOrThrow();
  t.equal(token.revoked_at, null, 'the token is not revoked');
  const client = await db.selectFrom('clients').select(['name', 'secret_hash']).where('id', '=', owned.client.id).executeTakeFirstOrThrow();
  t.equal(client.name, 'Victim app', 'the application was not edited');
  t.equal(client.secret_hash, owned.client.secret_hash, 'its secret was not rotated');
  const device = await db.selectFrom('device_codes').select('status').where('id', '=', pending.rowId).executeTakeFirstOrThrow();
  t.equal(device.status, 'pending', 'the device code was not approved');
  const users = await db.selectFrom('users').select('id').where('email', '=', 'forged@example.com').execute();
  t.equal(users.length, 0, 'no account was created');
});

t.test('valid token passes the same forms', async (t) => {
  // The control: the rejections above come from the token, not from the rest of the request.
  const created = await victim.browser.submit('/accounts/tokens/', { name: 'real', 'scope:read:profile': 'on', expires: '30' });
  t.equal(created.status, 201, 'a token form with its own token creates a token');
  await created.arrayBuffer();
  const revoked = await victim.browser.submit(`/accounts/tokens/${pat.row.id}/revoke/`, {});
  t.equal(revoked.status, 303, 'a revocation form with its own token revokes');
});

/** `next` values that try to leave the site. Each is sent both as the literal value and raw in a link. */
const OFF_SITE_NEXT = [
  '//evil.example',
  '/\\evil.example',
  '\\\\evil.example',
  'https://evil.example',
  '%2F%2Fevil.example',
  '/%09/evil.example',
  '/\t/evil.example',
  '/\n/evil.example',
  '///evil.example',
  '/\\/evil.example',
  'javascript:alert(1)',
  ' //evil.example',
  'https:evil.example',
];

function expectOnSite(t: Test, response: Response, label: string): void {
  t.equal(response.status, 303, `${label}: redirects`);
  const location = response.headers.get('location') ?? '';
  t.equal(new URL(location, server.url).origin, origin, `${label}: stays on the site (Location ${JSON.stringify(location)})`);
  t.notOk(/^[\\/]{2}|^\/\\|^[a-z]+:/i.test(location), `${label}: Location is a plain path`);
}

t.test('next never leaves the site', async (t) => {
  for (const next of OFF_SITE_NEXT) {
    // Already signed in, the login page redirects straight to next.
    const encoded = await victim.browser.get(`/accounts/login/?next=${encodeURIComponent(next)}`);
    expectOnSite(t, encoded, `signed-in login page, next=${JSON.stringify(next)}`);
    const raw = await victim.browser.get(`/accounts/login/?next=${next.replace(/[\t\n ]/g, encodeURIComponent)}`);
    expectOnSite(t, raw, `signed-in login page, raw next=${JSON.stringify(next)}`);

    // The login form carries next through, so it must not carry an off-site one.
    const browser = new BrowserSession(server.url);
    const page = await browser.page(`/accounts/login/?next=${encodeURIComponent(next)}`);
    const carried = readHiddenFields(page.html).next ?? '';
    t.equal(new URL(carried, server.url).origin, origin, `login form for next=${JSON.stringify(next)} carries an on-site path (${JSON.stringify(carried)})`);

    const login = await browser.post('/accounts/login/', { csrf_token: page.csrfToken, email: victim.user.email, password: PASSWORD, next });
    if (/[\u0000-\u001f]/.test(next)) {
      // Form parameters with control characters are rejected before the password is checked.
      t.equal(login.status, 400, `login with next=${JSON.stringify(next)}: rejected`);
      t.equal(login.headers.get('location'), null, `login with next=${JSON.stringify(next)}: no redirect`);
      await login.arrayBuffer();
    } else {
      expectOnSite(t, login, `login with next=${JSON.stringify(next)}`);
    }
  }
});

t.test('signup next never leaves the site', async (t) => {
  for (const [index, next] of OFF_SITE_NEXT.slice(0, 6).entries()) {
    const browser = new BrowserSession(server.url);
    const page = await browser.page(`/accounts/signup/?next=${encodeURIComponent(next)}`);
    const signup = await browser.post('/accounts/signup/', {
      csrf_token: page.csrfToken,
      email: `next-${index}-${Date.now()}@example.com`,
      password: PASSWORD,
      next,
    });
    expectOnSite(t, signup, `signup with next=${JSON.stringify(next)}`);
  }
});

t.test('on-site next is kept', async (t) => {
  const browser = new BrowserSession(server.url);
  const user = await createTestUser(server);
  const page = await browser.page('/accounts/login/?next=%2Faccounts%2Ftokens%2F%3Ftab%3D1');
  const login = await browser.post('/accounts/login/', { csrf_token: page.csrfToken, email: user.email, password: PASSWORD, next: '/accounts/tokens/?tab=1' });
  t.equal(login.status, 303);
  t.equal(login.headers.get('location'), '/accounts/tokens/?tab=1', 'a path on this site is followed');
});

/** redirect_uri values that must never match https://client.example/callback. */
const UNREGISTERED_REDIRECTS = [
  'https://evil.example/callback',
  'https://client.example/callback/',
  'https://client.example/callback?x=1',
  'https://client.example/callback#x',
  'https://client.example/callback/../../evil',
  'https://client.example.evil.example/callback',
  'https://client.example@evil.example/callback',
  'https://evil.example/?https://client.example/callback',
  'HTTPS://CLIENT.EXAMPLE/callback',
  'https://client.example:443/callback',
  'http://client.example/callback',
  '//evil.example/callback',
  ' https://client.example/callback',
  'https://client.example/callback%00',
  'https://client.example/Callback',
];

const REDIRECT_MESSAGE = 'The redirect_uri does not match any URI registered for this application.';

async function expectErrorPage(t: Test, response: Response, label: string, message = REDIRECT_MESSAGE): Promise<void> {
  const html = await response.text();
  t.equal(response.status, 400, `${label}: 400`);
  t.equal(response.headers.get('location'), null, `${label}: no redirect`);
  t.equal(readErrorPage(html), message, `${label}: the error is shown on a page`);
}

t.test('unregistered redirect_uri shows a page', async (t) => {
  const anonymous = new BrowserSession(server.url);
  for (const redirectUri of UNREGISTERED_REDIRECTS) {
    const valid = authorizationParameters(codeClient.id, createPkce(), { redirect_uri: redirectUri });
    await expectErrorPage(t, await victim.browser.get(authorizePath(valid)), `signed in, ${redirectUri}`);
    await expectErrorPage(t, await anonymous.get(authorizePath(valid)), `signed out, ${redirectUri}`);
    const broken = { ...valid, response_type: 'token', prompt: 'none' };
    await expectErrorPage(t, await victim.browser.get(authorizePath(broken)), `other errors too, ${redirectUri}`);
  }
  const unknown = authorizationParameters('no-such-client', createPkce(), { redirect_uri: 'https://evil.example/callback' });
  await expectErrorPage(t, await victim.browser.get(authorizePath(unknown)), 'unknown client', 'The application that sent you here is not registered with this server.');
});

t.test('consent form cannot change redirect_uri', async (t) => {
  const parameters = authorizationParameters(codeClient.id, createPkce(), { prompt: 'consent' });
  const page = await victim.browser.page(authorizePath(parameters));
  t.equal(page.status, 200, 'the consent page is shown');
  const fields = { ...readHiddenFields(page.html), action: 'approve', 'grant:read:profile': 'on' };

  for (const redirectUri of UNREGISTERED_REDIRECTS.slice(0, 6)) {
    const before = await db.selectFrom('authorization_codes').select('id').execute();
    const response = await victim.browser.post('/o/authorize/', { ...fields, redirect_uri: redirectUri });
    await expectErrorPage(t, response, `tampered consent, ${redirectUri}`);
    const after = await db.selectFrom('authorization_codes').select('id').execute();
    t.equal(after.length, before.length, `tampered consent, ${redirectUri}: no code was created`);
  }
});

t.test('loopback redirect_uri allows any port', async (t) => {
  const { client } = await registerCodeClient(server, { redirectUris: ['http://127.0.0.1/callback'] });

  const allowed = authorizationParameters(client.id, createPkce(), { redirect_uri: 'http://127.0.0.1:5555/callback', prompt: 'none' });
  const response = await victim.browser.get(authorizePath(allowed));
  await response.arrayBuffer();
  t.equal(response.status, 303, 'a loopback redirect on another port is followed (RFC 8252)');
  t.equal(new URL(response.headers.get('location') ?? '').origin, 'http://127.0.0.1:5555');

  for (const redirectUri of [
    'http://127.0.0.1:5555/other',
    'http://localhost:5555/callback',
    'http://127.0.0.2:5555/callback',
    'http://127.0.0.1.evil.example:5555/callback',
    'https://127.0.0.1:5555/callback',
    'http://[::1]:5555/callback',
  ]) {
    const parameters = authorizationParameters(client.id, createPkce(), { redirect_uri: redirectUri, prompt: 'none' });
    await expectErrorPage(t, await victim.browser.get(authorizePath(parameters)), redirectUri);
  }
});
