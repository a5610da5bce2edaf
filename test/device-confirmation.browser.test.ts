import t, { type Test } from 'tap';
import type { Browser, Page } from 'playwright-core';
import { createUser } from '../src/accounts/users.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { findDeviceCode, normalizeUserCode } from '../src/oauth/device-codes.ts';
import {
  authorizationParameters,
  authorizePath,
  createPkce,
  postForm,
  registerCodeClient,
} from './helpers/authorization.ts';
import { launchChromium, openPage, saveScreenshot } from './helpers/chromium.ts';
import { startServer, type TestServer } from './helpers/server.ts';

const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery';

/** One read and one write scope, so every page shows both risk labels. */
const SCOPE = 'read:profile write:profile';

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

interface DeviceFlow {
  clientId: string;
  deviceCode: string;
  userCode: string;
  verificationUriComplete: string;
}

/** Creates the test user and the operator client that every device flow in this file uses. */
async function prepareServer(server: TestServer): Promise<string> {
  const { db, scopes } = server.app.speedgate;
  await createUser(db, { email: EMAIL, password: PASSWORD, name: 'Ada Lovelace' }, server.clock.now());
  const registration = { name: 'Acme CLI', registrationType: 'operator' as const };
  const { client } = await registerClient(db, scopes, registration, server.clock.now());
  return client.id;
}

/** Starts a device authorization as a CLI would. */
async function startFlow(t: Test, server: TestServer, clientId: string): Promise<DeviceFlow> {
  const started = await postForm(`${server.url}/o/device-authorization/`, { client_id: clientId, scope: SCOPE });
  t.equal(started.status, 200, 'device authorization starts');
  return {
    clientId,
    deviceCode: started.body.device_code,
    userCode: started.body.user_code,
    verificationUriComplete: started.body.verification_uri_complete,
  };
}

/** Polls the token endpoint once, after moving the clock past the 5-second interval. */
async function pollToken(server: TestServer, flow: DeviceFlow) {
  server.clock.advance(5);
  return postForm(`${server.url}/o/token/`, {
    grant_type: DEVICE_CODE_GRANT,
    device_code: flow.deviceCode,
    client_id: flow.clientId,
  });
}

async function readStatus(server: TestServer, flow: DeviceFlow): Promise<string | undefined> {
  const row = await findDeviceCode(server.app.speedgate.db, normalizeUserCode(flow.userCode) ?? '');
  return row?.status;
}

/** Fills in the login form that the browser is on and waits for the page it returns to. */
async function logIn(page: Page): Promise<void> {
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await page.getByLabel('Email address').fill(EMAIL);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname !== '/accounts/login/');
}

/** Opens the verification_uri_complete link signed out, logs in, and continues to the confirm page. */
async function openLink(page: Page, flow: DeviceFlow): Promise<void> {
  await page.goto(flow.verificationUriComplete);
  await logIn(page);
  await page.getByRole('heading', { level: 1, name: 'Connect a device' }).waitFor();
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('heading', { level: 1, name: 'Approve this device?' }).waitFor();
}

/** Signs in and types `userCode` on the bare entry page, as a person reading it off a device would. */
async function typeCode(page: Page, server: TestServer, userCode: string): Promise<void> {
  await page.goto(`${server.url}/accounts/login/?next=/o/device/`);
  await logIn(page);
  await page.getByLabel('Code').fill(userCode);
  await page.getByRole('button', { name: 'Continue' }).click();
}

/** Clicks a button that posts the device form and returns the HTTP status of the page it loads. */
async function submitDeviceForm(page: Page, button: string): Promise<number> {
  const posted = page.waitForResponse(
    (response) => response.request().method() === 'POST' && new URL(response.url()).pathname === '/o/device/',
  );
  await page.getByRole('button', { name: button, exact: true }).click();
  const response = await posted;
  await page.waitForLoadState();
  return response.status();
}

async function readRiskLabels(page: Page): Promise<string[]> {
  return page.locator('main .risk').allTextContents();
}

const PENDING = { error: 'authorization_pending', error_description: 'The user has not yet approved the request' };
const CONFIRM_LABEL = /matches the one on my device/;

// One server serves every test: in trials on a loaded machine, a test took 12 to 22 seconds with
// its own server and 2 to 4 seconds on a shared one. Each test starts its own device flow, and the expiry test runs last because
// it moves the clock past every code started before it.
function defineTests(browser: Browser, server: TestServer, clientId: string): void {
  t.test('link path needs the code confirmed', async (t) => {
    const flow = await startFlow(t, server, clientId);
    const page = await openPage(t, browser, server.url);

    await openLink(page, flow);
    const checkbox = page.getByLabel(CONFIRM_LABEL);
    t.equal(await checkbox.count(), 1, 'the confirm page asks to confirm the code');
    t.equal(await checkbox.isChecked(), false, 'the box starts unticked');
    t.match(await page.locator('label[for="code_matches"]').textContent(), `The code ${flow.userCode} matches`);
    t.same(await readRiskLabels(page), ['read', 'write'], 'each scope shows its risk');
    await saveScreenshot(page, 'device-link-confirm');

    t.equal(await submitDeviceForm(page, 'Approve'), 400, 'approving without the tick is a 400');
    t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Approve this device?');
    t.match(await page.getByRole('alert').textContent(), /Confirm that this code matches the one shown on your device/);
    t.equal(await checkbox.getAttribute('aria-invalid'), 'true', 'the box is marked invalid');
    t.equal(await checkbox.getAttribute('aria-describedby'), 'form-error', 'the box names the error');
    await saveScreenshot(page, 'device-link-unconfirmed');

    t.equal(await readStatus(server, flow), 'pending', 'the code is still pending');
    const pending = await pollToken(server, flow);
    t.equal(pending.status, 400);
    t.same(pending.body, PENDING, 'the device keeps waiting');

    await checkbox.check();
    t.equal(await submitDeviceForm(page, 'Approve'), 200, 'approving with the tick succeeds');
    t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Device connected');
    await saveScreenshot(page, 'device-link-connected');

    const issued = await pollToken(server, flow);
    t.equal(issued.status, 200, 'tokens are issued');
    t.equal(issued.body.scope, SCOPE);
    t.type(issued.body.access_token, 'string');
    t.type(issued.body.refresh_token, 'string');
  });

  t.test('typed code needs no confirmation', async (t) => {
    const flow = await startFlow(t, server, clientId);
    const page = await openPage(t, browser, server.url);

    await typeCode(page, server, flow.userCode);
    await page.getByRole('heading', { level: 1, name: 'Approve this device?' }).waitFor();
    t.equal(await page.getByLabel(CONFIRM_LABEL).count(), 0, 'no confirmation box');
    t.equal(await page.locator('input[name="via"]').count(), 0, 'the form does not claim the link path');
    t.same(await readRiskLabels(page), ['read', 'write'], 'each scope shows its risk');
    await saveScreenshot(page, 'device-typed-confirm');

    t.equal(await submitDeviceForm(page, 'Approve'), 200);
    t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Device connected');

    const issued = await pollToken(server, flow);
    t.equal(issued.status, 200, 'tokens are issued');
    t.equal(issued.body.scope, SCOPE);
  });

  t.test('wrong code stays on the entry page', async (t) => {
    const flow = await startFlow(t, server, clientId);
    const page = await openPage(t, browser, server.url);

    const wrongCode = flow.userCode === 'BBBB-BBBB' ? 'CCCC-CCCC' : 'BBBB-BBBB';
    await typeCode(page, server, wrongCode);
    await page.getByRole('alert').waitFor();
    t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Connect a device');
    t.match(await page.getByRole('alert').textContent(), /That code is not valid/);
    t.equal(await page.getByLabel('Code').getAttribute('aria-invalid'), 'true');
    await saveScreenshot(page, 'device-confirmation-wrong-code');

    t.equal(await readStatus(server, flow), 'pending', 'the real code is untouched');
    t.same((await pollToken(server, flow)).body, PENDING);
  });

  t.test('deny from the link needs no tick', async (t) => {
    const flow = await startFlow(t, server, clientId);
    const page = await openPage(t, browser, server.url);

    await openLink(page, flow);
    t.equal(await submitDeviceForm(page, 'Deny'), 200);
    t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Request denied');
    t.match(await page.getByRole('status').textContent(), /was not given access/);
    await saveScreenshot(page, 'device-link-denied');

    t.equal(await readStatus(server, flow), 'denied');
    const denied = await pollToken(server, flow);
    t.equal(denied.status, 400);
    t.same(denied.body, { error: 'access_denied', error_description: 'The user denied the authorization request' });
  });

  t.test('risk labels on consent and tokens', async (t) => {
    const { client } = await registerCodeClient(server, { name: 'Acme Connector' });
    const page = await openPage(t, browser, server.url);

    const parameters = authorizationParameters(client.id, createPkce(), { scope: SCOPE });
    await page.goto(`${server.url}${authorizePath(parameters)}`);
    await logIn(page);
    await page.getByRole('heading', { level: 1, name: 'Authorize Acme Connector' }).waitFor();
    t.same(await readRiskLabels(page), ['read', 'write'], 'consent page labels each scope');
    const writeLabel = page.locator('label', { hasText: 'Change your name' });
    t.equal(await writeLabel.locator('.risk').textContent(), 'write', 'write:profile is labelled write');
    await saveScreenshot(page, 'consent-risk-labels');

    await page.goto(`${server.url}/accounts/tokens/`);
    const labels = page.locator('fieldset.scopes label');
    const texts = await labels.allTextContents();
    t.ok(texts.length >= 5, 'the token form lists the scopes');
    for (const text of texts) {
      const name = /(\S+)$/.exec(text.trim())?.[1] ?? '';
      const expected = name.startsWith('write:') ? 'write' : 'read';
      const label = labels.filter({ hasText: name });
      t.equal(await label.locator('.risk').textContent(), expected, `${name} is labelled ${expected}`);
    }
    await saveScreenshot(page, 'tokens-risk-labels');
  });

  t.test('expired code is rejected', async (t) => {
    const flow = await startFlow(t, server, clientId);
    const page = await openPage(t, browser, server.url);

    await page.goto(flow.verificationUriComplete);
    await logIn(page);
    server.clock.advance(901);
    t.equal(await submitDeviceForm(page, 'Continue'), 400);
    t.match(await page.getByRole('alert').textContent(), /That code has expired/);
    t.equal(await page.getByLabel(CONFIRM_LABEL).count(), 0, 'no approval is offered');
    await saveScreenshot(page, 'device-confirmation-expired');

    const expired = await pollToken(server, flow);
    t.equal(expired.status, 400);
    t.same(expired.body, {
      error: 'expired_token',
      error_description: 'The device_code has expired; start a new device authorization',
    });
  });
}

const browser = await launchChromium(t);
if (browser !== undefined) {
  const server = await startServer(t);
  defineTests(browser, server, await prepareServer(server));
}
