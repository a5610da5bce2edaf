import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { chromium } from 'playwright-core';
import { createUser } from '../src/accounts/users.ts';
import { CHROMIUM_PATH, saveScreenshot } from './helpers/chromium.ts';
import { PASSWORD, authorizationParameters, authorizePath, createPkce, redeemCode, registerCodeClient } from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';

// The flags the project runs Chromium with: headless, no sandbox or GPU, no background traffic.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/** Starts a native app's loopback redirect listener (RFC 8252 section 7.3) and records what reaches it. */
async function startCallbackListener(t: Test) {
  const received: string[] = [];
  const listener = createServer((request: IncomingMessage, response) => {
    received.push(request.url ?? '');
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>Signed in</title><h1>You can close this window</h1>');
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())));

  const { port } = listener.address() as AddressInfo;
  return { origin: `http://127.0.0.1:${port}`, received };
}

t.test('consent in Chromium lands on the redirect', async (t) => {
  if (!existsSync(CHROMIUM_PATH)) {
    t.plan(0, `Chromium not found at ${CHROMIUM_PATH}; install the Debian chromium package to run browser tests`);
    return;
  }

  const server = await startServer(t);
  const callback = await startCallbackListener(t);
  const redirectUri = `${callback.origin}/cb`;
  const { client } = await registerCodeClient(server, { name: 'Acme Desktop', redirectUris: ['http://127.0.0.1/cb'] });
  const email = 'grace@example.com';
  await createUser(server.app.speedgate.db, { email, password: PASSWORD }, server.clock.now());

  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  t.teardown(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  // Only the server under test and the loopback listener may be reached.
  const allowed = new Set([server.url, callback.origin]);
  await context.route('**/*', (route) => {
    const origin = new URL(route.request().url()).origin;
    return allowed.has(origin) ? route.continue() : route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });

  const pkce = createPkce();
  const parameters = authorizationParameters(client.id, pkce, { redirect_uri: redirectUri, scope: 'read:profile read:teams' });
  await page.goto(`${server.url}${authorizePath(parameters)}`);
  t.equal(new URL(page.url()).pathname, '/accounts/login/', 'a signed-out user is sent to log in');

  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Authorize Acme Desktop' }).waitFor();

  const main = page.locator('main');
  t.match(await main.textContent(), /Acme Desktop/);
  t.match(await main.textContent(), new RegExp(`you will be sent to ${callback.origin.replace('http://', '')}`));
  t.equal(await page.getByLabel('Read your name and email address').isChecked(), true);
  t.equal(await page.getByLabel('See your teams and their members').isChecked(), true);
  await saveScreenshot(page, 'consent');

  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL((url) => url.origin === callback.origin);

  const landed = new URL(page.url());
  t.equal(`${landed.origin}${landed.pathname}`, redirectUri, 'the browser reached the loopback listener');
  t.strictSame([...landed.searchParams.keys()].sort(), ['code', 'iss', 'state']);
  t.equal(landed.searchParams.get('state'), parameters.state);
  t.equal(landed.searchParams.get('iss'), server.url);
  t.equal(callback.received.length, 1, 'the listener got one request');
  t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'You can close this window');
  t.strictSame(consoleErrors, [], 'no CSP violation or script error');

  const code = landed.searchParams.get('code') ?? '';
  const redeemed = await redeemCode(server, client.id, { code, state: parameters.state, pkce, redirectUri });
  t.equal(redeemed.status, 200, 'the code redeems');
  t.equal(redeemed.body.scope, 'read:profile read:teams');
});
