import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BrowserSession } from './helpers/browser-session.ts';
import {
  PASSWORD,
  REDIRECT_URI,
  authorizationParameters,
  authorizePath,
  createPkce,
  createSignedInUser,
  obtainCode,
  readHiddenFields,
  readRedirect,
  readTickedScopes,
  redeemCode,
  registerCodeClient,
  submitConsent,
} from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';

const server = await startServer(t);

const UNKNOWN_CLIENT = 'The application that sent you here is not registered with this server.';
const UNREGISTERED_REDIRECT = 'The redirect_uri does not match any URI registered for this application.';

async function expectErrorPage(t: Test, response: Response, message: string): Promise<void> {
  t.equal(response.status, 400, 'status');
  t.match(response.headers.get('content-type'), /^text\/html/, 'an HTML page');
  t.equal(response.headers.get('location'), null, 'no redirect');
  const html = await response.text();
  t.ok(html.includes(message), `the page says: ${message}`);
}

t.test('unknown client_id shows an error page', async (t) => {
  const anonymous = new BrowserSession(server.url);
  const parameters = authorizationParameters('no-such-client', createPkce());

  await expectErrorPage(t, await anonymous.get(authorizePath(parameters)), UNKNOWN_CLIENT);

  const { client_id: _omitted, ...withoutClient } = parameters;
  await expectErrorPage(
    t,
    await anonymous.get(authorizePath(withoutClient)),
    'The request has no client_id. Ask the application to start the sign-in again.',
  );
});

t.test('unregistered redirect_uri shows an error page', async (t) => {
  const { client } = await registerCodeClient(server, {
    redirectUris: [REDIRECT_URI, 'http://127.0.0.1/cb', 'http://[::1]/cb'],
  });
  const anonymous = new BrowserSession(server.url);
  const cases = [
    ['longer path', 'https://client.example/callback/more'],
    ['path with a suffix', 'https://client.example/callbackx'],
    ['added query', 'https://client.example/callback?next=/admin'],
    ['another port', 'https://client.example:8443/callback'],
    ['a fragment', 'https://client.example/callback#fragment'],
    ['an empty fragment', 'https://client.example/callback#'],
    ['http in place of https', 'http://client.example/callback'],
    ['another host', 'https://attacker.example/callback'],
    ['a subdomain', 'https://evil.client.example/callback'],
    ['a trailing slash', 'https://client.example/callback/'],
    ['upper-case host', 'https://CLIENT.example/callback'],
    ['userinfo', 'https://client.example@attacker.example/callback'],
    ['loopback with another path', 'http://127.0.0.1:5000/other'],
    ['loopback with a fragment', 'http://127.0.0.1:5000/cb#x'],
    ['loopback over https', 'https://127.0.0.1:5000/cb'],
    ['localhost for 127.0.0.1', 'http://localhost:5000/cb'],
    ['loopback with userinfo', 'http://user@127.0.0.1:5000/cb'],
  ];

  for (const [label, redirectUri] of cases) {
    await t.test(label, async (t) => {
      const parameters = authorizationParameters(client.id, createPkce(), { redirect_uri: redirectUri });
      await expectErrorPage(t, await anonymous.get(authorizePath(parameters)), UNREGISTERED_REDIRECT);
    });
  }

  await t.test('absent with several registered', async (t) => {
    const { redirect_uri: _omitted, ...parameters } = authorizationParameters(client.id, createPkce());
    await expectErrorPage(
      t,
      await anonymous.get(authorizePath(parameters)),
      'The request has no redirect_uri, and the application registered more than one.',
    );
  });
});

t.test('loopback redirect accepts any port', async (t) => {
  const { client } = await registerCodeClient(server, {
    redirectUris: ['http://127.0.0.1/cb', 'http://[::1]/cb'],
  });
  const { browser } = await createSignedInUser(server);

  for (const redirectUri of ['http://127.0.0.1:49152/cb', 'http://127.0.0.1/cb', 'http://[::1]:61000/cb']) {
    await t.test(redirectUri, async (t) => {
      const parameters = authorizationParameters(client.id, createPkce(), { redirect_uri: redirectUri, prompt: 'consent' });
      const consent = await browser.get(authorizePath(parameters));
      t.equal(consent.status, 200, 'the consent page is shown');

      const approved = await submitConsent(browser, await consent.text());
      t.equal(approved.status, 303);
      const { target, parameters: returned } = readRedirect(approved);
      t.equal(target, redirectUri, 'redirected to the port the client asked for');
      t.strictSame(Object.keys(returned).sort(), ['code', 'iss', 'state']);
      t.equal(returned.state, parameters.state);
    });
  }
});

t.test('redirectable errors carry state and iss', async (t) => {
  const { client } = await registerCodeClient(server, { scopes: ['read:profile', 'read:teams'] });
  const anonymous = new BrowserSession(server.url);
  const cases: Array<[string, Record<string, string | undefined>, string, string]> = [
    ['missing code_challenge', { code_challenge: undefined }, 'invalid_request', 'code_challenge is required: this server requires PKCE with S256'],
    ['plain code_challenge_method', { code_challenge_method: 'plain' }, 'invalid_request', 'code_challenge_method must be S256; plain is not supported'],
    ['missing code_challenge_method', { code_challenge_method: undefined }, 'invalid_request', 'code_challenge_method must be S256; plain is not supported'],
    ['short code_challenge', { code_challenge: 'abc' }, 'invalid_request', 'code_challenge must be 43 to 128 characters of base64url'],
    ['response_type token', { response_type: 'token' }, 'unsupported_response_type', 'response_type must be code'],
    ['missing response_type', { response_type: undefined }, 'invalid_request', 'response_type is required and must be code'],
    ['unknown scope', { scope: 'read:profile delete:everything' }, 'invalid_scope', 'Unknown scope: delete:everything'],
    ['reserved scope', { scope: 'admin' }, 'invalid_scope', 'The scope admin cannot be granted to applications'],
    ['scope the client lacks', { scope: 'read:profile write:teams' }, 'invalid_scope', 'The client may not request the scope write:teams'],
    ['unknown resource', { resource: 'https://attacker.example/api' }, 'invalid_target', 'The resource https://attacker.example/api is not served by this authorization server'],
    ['unknown prompt', { prompt: 'select_account' }, 'invalid_request', 'prompt must be none, login or consent'],
  ];

  for (const [label, overrides, error, description] of cases) {
    await t.test(label, async (t) => {
      const parameters = authorizationParameters(client.id, createPkce());
      for (const [name, value] of Object.entries(overrides)) {
        if (value === undefined) delete parameters[name];
        else parameters[name] = value;
      }

      const response = await anonymous.get(authorizePath(parameters));
      t.equal(response.status, 303);
      const { target, parameters: returned } = readRedirect(response);
      t.equal(target, REDIRECT_URI);
      t.strictSame(returned, { error, error_description: description, state: parameters.state, iss: server.url });
    });
  }

  await t.test('without state', async (t) => {
    const { state: _omitted, ...parameters } = authorizationParameters(client.id, createPkce(), { response_type: 'token' });
    const { parameters: returned } = readRedirect(await anonymous.get(authorizePath(parameters)));
    t.strictSame(returned, { error: 'unsupported_response_type', error_description: 'response_type must be code', iss: server.url });
  });
});

t.test('client without the code grant gets unauthorized_client', async (t) => {
  const { client } = await registerCodeClient(server, {
    grantTypes: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  });
  const parameters = authorizationParameters(client.id, createPkce());

  const response = await new BrowserSession(server.url).get(authorizePath(parameters));
  t.equal(response.status, 303);
  const { target, parameters: returned } = readRedirect(response);
  t.equal(target, REDIRECT_URI);
  t.strictSame(returned, {
    error: 'unauthorized_client',
    error_description: 'The client is not allowed to use the authorization code grant',
    state: parameters.state,
    iss: server.url,
  });
});

t.test('denied consent returns access_denied', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);
  const parameters = authorizationParameters(client.id, createPkce());
  const consent = await browser.get(authorizePath(parameters));
  const html = await consent.text();

  const denied = await submitConsent(browser, html, { action: 'deny' });
  t.equal(denied.status, 303);
  const { target, parameters: returned } = readRedirect(denied);
  t.equal(target, REDIRECT_URI);
  t.strictSame(returned, { error: 'access_denied', error_description: 'The user denied the request', state: parameters.state, iss: server.url });

  const noneTicked = await submitConsent(browser, html, { untick: ['read:profile', 'read:teams'] });
  t.strictSame(readRedirect(noneTicked).parameters, {
    error: 'access_denied',
    error_description: 'The user approved no scope',
    state: parameters.state,
    iss: server.url,
  });

  const again = await browser.get(authorizePath(parameters));
  t.equal(again.status, 200, 'a denial records no consent');
});

t.test('logged-out user signs in and returns', async (t) => {
  const { client } = await registerCodeClient(server);
  const { user } = await createSignedInUser(server);
  const browser = new BrowserSession(server.url);
  const requestPath = authorizePath(authorizationParameters(client.id, createPkce()));

  const first = await browser.get(requestPath);
  t.equal(first.status, 303);
  const login = new URL(first.headers.get('location') ?? '', server.url);
  t.equal(login.pathname, '/accounts/login/');
  t.equal(login.searchParams.get('next'), requestPath);

  const loginPage = await browser.page(login.pathname + login.search);
  t.equal(readHiddenFields(loginPage.html).next, requestPath, 'the login form carries the request');
  const signedIn = await browser.post('/accounts/login/', {
    csrf_token: loginPage.csrfToken,
    next: requestPath,
    email: user.email,
    password: PASSWORD,
  });
  t.equal(signedIn.status, 303);
  t.equal(signedIn.headers.get('location'), requestPath, 'back to the authorization request');

  const consent = await browser.get(requestPath);
  t.equal(consent.status, 200);
  t.match(await consent.text(), /Authorize Example Connector/);
});

t.test('remembered consent skips the page', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);
  await obtainCode(browser, client.id, { scope: 'read:profile read:teams' });

  const pkce = createPkce();
  const parameters = authorizationParameters(client.id, pkce, { scope: 'read:teams read:profile' });
  const second = await browser.get(authorizePath(parameters));
  t.equal(second.status, 303, 'no consent page');
  const { target, parameters: returned } = readRedirect(second);
  t.equal(target, REDIRECT_URI);
  t.strictSame(Object.keys(returned).sort(), ['code', 'iss', 'state']);
  t.equal(returned.state, parameters.state);
  t.equal(returned.iss, server.url);

  const subset = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { scope: 'read:teams' })));
  t.equal(subset.status, 303, 'a subset of the approved scopes needs no page either');
  t.type(readRedirect(subset).parameters.code, 'string');

  const redeemed = await redeemCode(server, client.id, { code: returned.code, state: parameters.state, pkce, redirectUri: REDIRECT_URI });
  t.equal(redeemed.status, 200);
  t.equal(redeemed.body.scope, 'read:profile read:teams');
});

t.test('new scope shows the consent page again', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);
  await obtainCode(browser, client.id, { scope: 'read:profile' });

  const wider = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { scope: 'read:profile read:teams' })));
  t.equal(wider.status, 200);
  const html = await wider.text();
  t.strictSame(readTickedScopes(html), ['read:profile', 'read:teams']);
  t.match(html, /Read your name and email address <code>read:profile<\/code> <span class="muted">\(already allowed\)<\/span>/);
  t.match(html, /See your teams and their members <code>read:teams<\/code><\/label>/, 'the new scope is not marked as allowed');
});

t.test('prompt=consent always shows the page', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);
  await obtainCode(browser, client.id, { scope: 'read:profile' });

  const parameters = authorizationParameters(client.id, createPkce(), { scope: 'read:profile', prompt: 'consent' });
  const page = await browser.get(authorizePath(parameters));
  t.equal(page.status, 200);
  t.equal(readHiddenFields(await page.text()).prompt, 'consent');
});

t.test('prompt=none needs a session and consent', async (t) => {
  const { client } = await registerCodeClient(server);
  const anonymous = new BrowserSession(server.url);
  const parameters = authorizationParameters(client.id, createPkce(), { prompt: 'none' });

  const loggedOut = await anonymous.get(authorizePath(parameters));
  t.equal(loggedOut.status, 303);
  const { target, parameters: returned } = readRedirect(loggedOut);
  t.equal(target, REDIRECT_URI);
  t.strictSame(returned, { error: 'login_required', error_description: 'The user is not signed in', state: parameters.state, iss: server.url });

  const { browser } = await createSignedInUser(server);
  const noConsent = await browser.get(authorizePath(parameters));
  t.equal(noConsent.status, 303);
  t.strictSame(readRedirect(noConsent).parameters, {
    error: 'consent_required',
    error_description: 'The user has not approved these scopes',
    state: parameters.state,
    iss: server.url,
  });

  await obtainCode(browser, client.id, { scope: parameters.scope });
  const consented = await browser.get(authorizePath({ ...parameters, state: 'after-consent' }));
  t.equal(consented.status, 303);
  const silent = readRedirect(consented).parameters;
  t.strictSame(Object.keys(silent).sort(), ['code', 'iss', 'state'], 'a code without any page');
  t.equal(silent.state, 'after-consent');
});

t.test('unticked scope narrows the token', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);

  const issued = await obtainCode(browser, client.id, { scope: 'read:profile read:teams' }, { untick: ['read:teams'] });
  const redeemed = await redeemCode(server, client.id, issued);
  t.equal(redeemed.status, 200);
  t.equal(redeemed.body.scope, 'read:profile');

  const auth = { authorization: `Bearer ${redeemed.body.access_token}` };
  const teams = await fetch(`${server.url}/api/v1/teams/`, { headers: auth });
  t.equal(teams.status, 403, 'the unticked scope is not in the token');
  t.strictSame(await teams.json(), {
    error: 'insufficient_scope',
    error_description: 'This request requires the scope read:teams',
    scope: 'read:teams',
  });

  const again = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { scope: 'read:profile read:teams' })));
  t.equal(again.status, 200, 'the unticked scope was not remembered');
});

t.test('unticking withdraws a remembered scope', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);
  await obtainCode(browser, client.id, { scope: 'read:profile read:teams' });

  const narrowed = await obtainCode(browser, client.id, { scope: 'read:profile read:teams', prompt: 'consent' }, { untick: ['read:teams'] });
  t.equal((await redeemCode(server, client.id, narrowed)).body.scope, 'read:profile');

  const later = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { scope: 'read:profile read:teams' })));
  t.equal(later.status, 200, 'the consent page asks again for the withdrawn scope');
  await later.arrayBuffer();

  const stillTicked = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { scope: 'read:profile' })));
  t.equal(stillTicked.status, 303, 'the scope still ticked stays remembered');
});

t.test('consent POST without CSRF token is 403', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);
  const { browser: other } = await createSignedInUser(server);
  const parameters = authorizationParameters(client.id, createPkce());
  const html = await (await browser.get(authorizePath(parameters))).text();
  const fields = { ...readHiddenFields(html), 'grant:read:profile': 'on', action: 'approve' };
  const otherToken = readHiddenFields(await (await other.get(authorizePath(parameters))).text()).csrf_token;

  const submissions: Array<[string, Record<string, string>]> = [
    ['missing', Object.fromEntries(Object.entries(fields).filter(([name]) => name !== 'csrf_token'))],
    ['empty', { ...fields, csrf_token: '' }],
    ['forged', { ...fields, csrf_token: 'x'.repeat(43) }],
    ["another session's", { ...fields, csrf_token: otherToken }],
  ];
  for (const [label, body] of submissions) {
    await t.test(label, async (t) => {
      const response = await browser.post('/o/authorize/', body);
      t.equal(response.status, 403);
      t.equal(response.headers.get('location'), null);
      t.match(response.headers.get('content-type'), /^text\/html/);
      t.ok((await response.text()).includes('The form has expired or was not sent from this site. Reload the page and try again.'));
    });
  }

  const codes = await server.app.speedgate.db
    .selectFrom('authorization_codes')
    .select('id')
    .where('client_id', '=', client.id)
    .execute();
  t.equal(codes.length, 0, 'no code was issued');
});

t.test('consent page escapes hostile client names', async (t) => {
  const hostile = `<script>alert("x")</script><img src=x onerror='alert(1)'>`;
  const { client } = await registerCodeClient(server, { name: hostile });
  const { browser } = await createSignedInUser(server);
  const state = `"><script>alert(2)</script>`;

  const page = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { state })));
  t.equal(page.status, 200);
  const html = await page.text();
  t.notOk(html.includes('<script'), 'no script element');
  t.notOk(html.includes('<img'), 'no img element');
  t.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=&#39;alert(1)&#39;&gt;'), 'the name is shown as text');
  t.equal(readHiddenFields(html).state, state, 'state survives as an attribute value');
});

t.test('consent page escapes hostile scope descriptions', async (t) => {
  const folder = mkdtempSync(path.join(tmpdir(), 'speedgate-scopes-'));
  t.teardown(() => rmSync(folder, { recursive: true, force: true }));
  const scopesFile = path.join(folder, 'scopes.json');
  writeFileSync(scopesFile, JSON.stringify([{ name: 'read:reports', description: `<b onmouseover="alert(1)">Reports</b> & 'charts'` }]));

  const scoped = await startServer(t, { env: { SCOPES_FILE: scopesFile } });
  const { client } = await registerCodeClient(scoped);
  const { browser } = await createSignedInUser(scoped);

  const page = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { scope: 'read:reports' })));
  t.equal(page.status, 200);
  const html = await page.text();
  t.notOk(html.includes('<b '), 'no b element');
  t.ok(html.includes('&lt;b onmouseover=&quot;alert(1)&quot;&gt;Reports&lt;/b&gt; &amp; &#39;charts&#39;'), 'the description is shown as text');
});

t.test('consent page sets a strict CSP', async (t) => {
  const { client } = await registerCodeClient(server, { redirectUris: [REDIRECT_URI, 'http://127.0.0.1/cb'] });
  const { browser } = await createSignedInUser(server);

  for (const [redirectUri, origin] of [
    [REDIRECT_URI, 'https://client.example'],
    ['http://127.0.0.1:49152/cb', 'http://127.0.0.1:49152'],
  ]) {
    await t.test(origin, async (t) => {
      const page = await browser.get(authorizePath(authorizationParameters(client.id, createPkce(), { redirect_uri: redirectUri })));
      t.equal(page.status, 200);
      const directives = (page.headers.get('content-security-policy') ?? '').split(';').map((directive) => directive.trim());
      t.ok(directives.includes("frame-ancestors 'none'"), "frame-ancestors 'none'");
      t.ok(directives.includes(`form-action 'self' ${origin}`), `form-action allows ${origin}`);
      t.ok(directives.includes("default-src 'self'"), "default-src 'self'");
      t.equal(page.headers.get('x-frame-options'), 'DENY');
      t.equal(page.headers.get('cache-control'), 'no-store');
      await page.arrayBuffer();
    });
  }
});
