import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { createUser } from '../src/accounts/users.ts';
import { PASSWORD, authorizePath, basicAuthorization, createPkce, postForm } from './helpers/authorization.ts';
import { launchChromium, saveScreenshot } from './helpers/chromium.ts';
import { startServer } from './helpers/server.ts';

const SECRET_SHAPE = /^sgs_[A-Za-z0-9_-]{43}$/;

/** Starts a loopback HTTP server that records the URL of every request and responds with a short page. */
async function startRedirectListener(t: Test): Promise<{ origin: string; requests: string[] }> {
  const requests: string[] = [];
  const listener = createServer((request, response) => {
    requests.push(request.url ?? '');
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>Callback</title><h1>Authorization received</h1>');
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())));

  const { port } = listener.address() as AddressInfo;
  return { origin: `http://127.0.0.1:${port}`, requests };
}

t.test('registered app completes a code flow', async (t) => {
  const browser = await launchChromium(t);
  if (browser === undefined) return;

  const server = await startServer(t);
  const listener = await startRedirectListener(t);
  const redirectUri = `${listener.origin}/callback`;
  const email = 'lin@example.com';
  await createUser(server.app.speedgate.db, { email, password: PASSWORD, name: 'Lin Chen' }, server.clock.now());

  // openPage allows a single origin, but the flow ends on the listener, so this context allows both.
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  t.teardown(() => context.close());
  const allowed = new Set([server.url, listener.origin]);
  await context.route('**/*', (route) => {
    const origin = new URL(route.request().url()).origin;
    return allowed.has(origin) ? route.continue() : route.abort('blockedbyclient');
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });

  // Sign in through the login page that the developer page redirects to.
  await page.goto(`${server.url}/accounts/developer/`);
  t.equal(new URL(page.url()).pathname, '/accounts/login/', 'a signed-out user is sent to log in');
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${server.url}/accounts/developer/`);
  t.ok(await page.getByText('No applications yet.').isVisible(), 'the new user has no applications');

  // Register a confidential app for the authorization code grant with refresh tokens.
  await page.getByLabel('Application name').fill('Lin Desktop Sync');
  // A second line checks that the textarea's line breaks reach the server intact.
  await page.getByLabel('Redirect URIs').fill(`${redirectUri}\nhttps://lin.example/oauth/callback`);
  await page.locator('input[name="grant:authorization_code"]').check();
  await page.locator('input[name="grant:refresh_token"]').check();
  await page.locator('input[name="grant:device_code"]').uncheck();
  await page.locator('input[name="grant:client_credentials"]').uncheck();
  await page.locator('input[name="client_type"][value="confidential"]').check();
  await page.getByLabel('How a confidential client sends its secret').selectOption('client_secret_basic');
  await page.getByRole('button', { name: 'Register application' }).click();
  await page.getByRole('heading', { level: 1, name: 'Lin Desktop Sync' }).waitFor();

  const clientId = ((await page.locator('#client-id').textContent()) ?? '').trim();
  t.match(clientId, /^[A-Za-z0-9_-]{24}$/, 'the page shows the client ID');
  const secretField = page.locator('#client-secret');
  t.equal(await secretField.getAttribute('readonly'), '', 'the secret field is readonly');
  const shownSecret = await secretField.inputValue();
  t.match(shownSecret, SECRET_SHAPE, 'the page shows the secret');
  t.match(await page.locator('main').textContent(), /It will not be shown again/);
  t.equal(
    await page.getByLabel('Redirect URIs').inputValue(),
    `${redirectUri}\nhttps://lin.example/oauth/callback`,
    'both redirect URIs are registered',
  );

  const copy = page.locator('button[data-copy="client-secret"]');
  t.equal(await copy.isVisible(), true, 'the script shows the copy button');
  await copy.click();
  // The label changes after the asynchronous clipboard write, so wait for it.
  await page.locator('button[data-copy="client-secret"]', { hasText: 'Copied' }).waitFor({ timeout: 5000 });
  t.equal(await copy.textContent(), 'Copied', 'the copy button reports success');
  const secret = await page.evaluate<string>('navigator.clipboard.readText()');
  t.equal(secret, shownSecret, 'the clipboard contains the secret');
  await saveScreenshot(page, 'developer-secret');

  // The same browser, still signed in, authorizes the new app.
  const pkce = createPkce();
  const state = 'lin-desktop-state-42';
  const parameters = {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: 'read:profile',
    state,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  };
  await page.goto(`${server.url}${authorizePath(parameters)}`);
  await page.getByRole('heading', { level: 1, name: 'Authorize Lin Desktop Sync' }).waitFor();
  t.equal(await page.getByLabel('Read your name and email address').isChecked(), true, 'read:profile is ticked');
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL((url) => url.origin === listener.origin);

  const landed = new URL(page.url());
  t.equal(`${landed.origin}${landed.pathname}`, redirectUri, 'the browser reached the redirect URI');
  t.equal(landed.searchParams.get('state'), state, 'the state comes back unchanged');
  const code = landed.searchParams.get('code') ?? '';
  t.not(code, '', 'the redirect carries a code');
  t.equal(listener.requests.length, 1, 'the listener received one request');
  t.strictSame(consoleErrors, [], 'no CSP violation or script error');

  const redeemed = await postForm(
    `${server.url}/o/token/`,
    { grant_type: 'authorization_code', code, code_verifier: pkce.verifier, redirect_uri: redirectUri },
    { authorization: basicAuthorization(clientId, secret) },
  );
  t.equal(redeemed.status, 200, 'the code redeems with client_secret_basic');
  t.equal(redeemed.body.token_type, 'Bearer');
  t.equal(redeemed.body.scope, 'read:profile');
  t.type(redeemed.body.refresh_token, 'string', 'the refresh_token grant yields a refresh token');

  const profile = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${redeemed.body.access_token}` } });
  t.equal(profile.status, 200, 'the access token works at the API');
  const body = (await profile.json()) as Record<string, unknown>;
  t.equal(body.email, email, 'the token acts for the signed-in user');

  // Loaded again, the app page no longer contains the secret.
  await page.goto(`${server.url}/accounts/developer/${encodeURIComponent(clientId)}/`);
  t.equal(await page.locator('#client-secret').count(), 0, 'the reloaded page has no secret field');
  t.notOk((await page.content()).includes(secret), 'the reloaded page never contains the secret');
});
