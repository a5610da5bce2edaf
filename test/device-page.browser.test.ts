import t, { type Test } from 'tap';
import type { Browser, Page } from 'playwright-core';
import { createUser } from '../src/accounts/users.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { ScopeRegistry } from '../src/oauth/scopes.ts';
import { launchChromium, openPage, saveScreenshot, type PageOptions } from './helpers/chromium.ts';
import { startServer, type TestServer } from './helpers/server.ts';

const PASSWORD = 'correct horse battery';
const PHONE: PageOptions = { viewport: { width: 390, height: 844 }, mobile: true };

interface DeviceAuthorization {
  clientId: string;
  deviceCode: string;
  userCode: string;
  verificationUriComplete: string;
}

async function postForm(url: string, fields: Record<string, string>, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
  const body = (await response.json()) as Record<string, string>;
  return { status: response.status, headers: response.headers, body };
}

/** Registers an operator client and starts a device authorization for it, as a CLI would. */
async function startDeviceFlow(
  t: Test,
  server: TestServer,
  options: { clientName?: string; userAgent?: string } = {},
): Promise<DeviceAuthorization> {
  const registration = { name: options.clientName ?? 'Acme CLI', registrationType: 'operator' as const };
  const { client } = await registerClient(server.app.speedgate.db, new ScopeRegistry(), registration, server.clock.now());

  const headers: Record<string, string> = options.userAgent === undefined ? {} : { 'user-agent': options.userAgent };
  const fields = { client_id: client.id, scope: 'read:profile read:teams' };
  const started = await postForm(`${server.url}/o/device-authorization/`, fields, headers);
  t.equal(started.status, 200, 'device authorization starts');

  return {
    clientId: client.id,
    deviceCode: started.body.device_code,
    userCode: started.body.user_code,
    verificationUriComplete: started.body.verification_uri_complete,
  };
}

/** Polls the token endpoint once, after waiting out the 5-second interval on the test clock. */
async function pollToken(server: TestServer, flow: DeviceAuthorization) {
  server.clock.advance(5);
  return postForm(`${server.url}/o/token/`, {
    grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
    device_code: flow.deviceCode,
    client_id: flow.clientId,
  });
}

async function signUp(page: Page, server: TestServer, email: string): Promise<void> {
  await page.goto(`${server.url}/accounts/signup/`);
  await page.getByLabel('Name').fill('Ada Lovelace');
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel(/^Password/).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL(`${server.url}/`);
}

async function readHeading(page: Page): Promise<string | null> {
  return page.getByRole('heading', { level: 1 }).textContent();
}

/** Clicks a submit button and waits for the page that has `title` as its main heading. */
async function submitAndExpect(page: Page, button: string, title: string): Promise<void> {
  await page.getByRole('button', { name: button, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
}

/** Types `userCode` as a person might (lower case, no dash) and continues to the confirm page. */
async function enterCode(page: Page, server: TestServer, userCode: string): Promise<void> {
  await page.goto(`${server.url}/o/device/`);
  await page.getByLabel('Code').fill(userCode.replace('-', '').toLowerCase());
  await page.getByRole('button', { name: 'Continue' }).click();
}

async function measureWidth(page: Page): Promise<{ scroll: number; client: number }> {
  const scroll = await page.evaluate<number>('document.documentElement.scrollWidth');
  const client = await page.evaluate<number>('document.documentElement.clientWidth');
  return { scroll, client };
}

function defineTests(browser: Browser): void {
  t.test('approves lower-case code without dash', async (t) => {
    const server = await startServer(t);
    const flow = await startDeviceFlow(t, server);
    const page = await openPage(t, browser, server.url);

    await signUp(page, server, 'ada@example.com');
    await page.goto(`${server.url}/o/device/`);
    t.equal(await readHeading(page), 'Connect a device');
    await saveScreenshot(page, 'device-entry');

    await enterCode(page, server, flow.userCode);
    await page.getByRole('heading', { level: 1, name: 'Approve this device?' }).waitFor();
    t.equal(await page.locator('main p strong').first().textContent(), 'Acme CLI');
    t.equal(await page.locator('dd.code').textContent(), flow.userCode);
    const scopes = await page.locator('ul.scopes li').allTextContents();
    t.equal(scopes.length, 2);
    t.match(scopes[0], /Read your name and email address/);
    t.match(scopes[1], /See your teams and their members/);
    await saveScreenshot(page, 'device-confirm');

    await submitAndExpect(page, 'Approve', 'Device connected');
    t.match(await page.getByRole('status').textContent(), /return to your device/);
    await saveScreenshot(page, 'device-connected');

    const issued = await pollToken(server, flow);
    t.equal(issued.status, 200);
    t.equal(issued.headers.get('cache-control'), 'no-store');
    t.equal(issued.body.token_type, 'Bearer');
    t.equal(issued.body.scope, 'read:profile read:teams');
    t.type(issued.body.access_token, 'string');
    t.type(issued.body.refresh_token, 'string');
  });

  t.test('verification_uri_complete survives login', async (t) => {
    const server = await startServer(t);
    const flow = await startDeviceFlow(t, server);
    await createUser(server.app.speedgate.db, { email: 'grace@example.com', password: PASSWORD }, server.clock.now());
    const page = await openPage(t, browser, server.url);

    await page.goto(flow.verificationUriComplete);
    const loginUrl = new URL(page.url());
    t.equal(loginUrl.pathname, '/accounts/login/');
    t.equal(loginUrl.searchParams.get('next'), `/o/device/?user_code=${flow.userCode}`);
    t.equal(await readHeading(page), 'Sign in');
    await saveScreenshot(page, 'device-login-redirect');

    await page.getByLabel('Email address').fill('grace@example.com');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(flow.verificationUriComplete);
    t.equal(await readHeading(page), 'Connect a device');
    t.equal(await page.getByLabel('Code').inputValue(), flow.userCode);
    await saveScreenshot(page, 'device-entry-prefilled');

    await submitAndExpect(page, 'Continue', 'Approve this device?');
    t.equal(await page.locator('dd.code').textContent(), flow.userCode);
  });

  t.test('wrong code marks the field invalid', async (t) => {
    const server = await startServer(t);
    const flow = await startDeviceFlow(t, server);
    const page = await openPage(t, browser, server.url);
    await signUp(page, server, 'ada@example.com');

    const unknownCode = flow.userCode === 'BBBB-BBBB' ? 'CCCC-CCCC' : 'BBBB-BBBB';
    for (const typed of [unknownCode, 'hello']) {
      await enterCode(page, server, typed);
      const alert = page.getByRole('alert');
      await alert.waitFor();
      t.equal(await readHeading(page), 'Connect a device', `${typed}: stays on the entry page`);
      t.match(await alert.textContent(), /That code is not valid/, `${typed}: error message`);

      const field = page.getByLabel('Code');
      t.equal(await field.getAttribute('aria-invalid'), 'true', `${typed}: field marked invalid`);
      t.equal(await field.getAttribute('aria-describedby'), 'form-error', `${typed}: field names the error`);
      t.equal(await field.inputValue(), typed.replace('-', '').toLowerCase(), `${typed}: typed value kept`);
    }
    await saveScreenshot(page, 'device-wrong-code');

    const pending = await pollToken(server, flow);
    t.same(pending.body, { error: 'authorization_pending', error_description: 'The user has not yet approved the request' });
  });

  t.test('expired code shows expired message', async (t) => {
    const server = await startServer(t);
    const flow = await startDeviceFlow(t, server);
    const page = await openPage(t, browser, server.url);
    await signUp(page, server, 'ada@example.com');

    server.clock.advance(901);
    await enterCode(page, server, flow.userCode);
    const alert = page.getByRole('alert');
    await alert.waitFor();
    t.match(await alert.textContent(), /That code has expired/);
    t.equal(await page.getByLabel('Code').getAttribute('aria-invalid'), 'true');
    await saveScreenshot(page, 'device-expired-code');

    const expired = await pollToken(server, flow);
    t.equal(expired.status, 400);
    t.same(expired.body, { error: 'expired_token', error_description: 'The device_code has expired; start a new device authorization' });
  });

  t.test('deny ends the flow with access_denied', async (t) => {
    const server = await startServer(t);
    const flow = await startDeviceFlow(t, server);
    const page = await openPage(t, browser, server.url);
    await signUp(page, server, 'ada@example.com');

    await enterCode(page, server, flow.userCode);
    await page.getByRole('heading', { level: 1, name: 'Approve this device?' }).waitFor();
    await submitAndExpect(page, 'Deny', 'Request denied');
    t.match(await page.getByRole('status').textContent(), /was not given access/);
    await saveScreenshot(page, 'device-denied');

    const denied = await pollToken(server, flow);
    t.equal(denied.status, 400);
    t.same(denied.body, { error: 'access_denied', error_description: 'The user denied the authorization request' });
  });

  t.test('hostile client name shown as text', async (t) => {
    const server = await startServer(t);
    const clientName = '<img src=x onerror=alert(1)>';
    const userAgent = '<script>alert(2)</script>';
    const flow = await startDeviceFlow(t, server, { clientName, userAgent });
    const page = await openPage(t, browser, server.url);

    const dialogs: string[] = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });

    await signUp(page, server, 'ada@example.com');
    await enterCode(page, server, flow.userCode);
    await page.getByRole('heading', { level: 1, name: 'Approve this device?' }).waitFor();

    t.equal(await page.locator('main p strong').first().textContent(), clientName);
    t.match(await page.locator('dl.facts').textContent(), userAgent);
    t.equal(await page.locator('main img').count(), 0, 'no img element');
    t.equal(await page.locator('main script').count(), 0, 'no script element');
    t.same(dialogs, [], 'no script ran');
    await saveScreenshot(page, 'device-confirm-hostile-name');
  });

  t.test('pages fit a phone screen', async (t) => {
    const server = await startServer(t);
    const flow = await startDeviceFlow(t, server, { clientName: 'Acme Command Line Interface for Continuous Deployment' });
    const page = await openPage(t, browser, server.url, PHONE);
    await signUp(page, server, 'a.very.long.email.address.for.testing@example.com');

    await enterCode(page, server, 'BBBB');
    await page.getByRole('alert').waitFor();
    const entry = await measureWidth(page);
    t.ok(entry.scroll <= entry.client, `entry page has no horizontal scroll (${entry.scroll} <= ${entry.client})`);
    await saveScreenshot(page, 'phone-device-entry-error');

    server.clock.advance(61);
    await enterCode(page, server, flow.userCode);
    await page.getByRole('heading', { level: 1, name: 'Approve this device?' }).waitFor();
    t.equal(await page.locator('dl.facts dd').nth(1).textContent(), '1 minute ago from 127.0.0.1');
    const confirm = await measureWidth(page);
    t.ok(confirm.scroll <= confirm.client, `confirm page has no horizontal scroll (${confirm.scroll} <= ${confirm.client})`);
    await saveScreenshot(page, 'phone-device-confirm');

    await submitAndExpect(page, 'Approve', 'Device connected');
    await saveScreenshot(page, 'phone-device-connected');
  });
}

const browser = await launchChromium(t);
if (browser !== undefined) defineTests(browser);
