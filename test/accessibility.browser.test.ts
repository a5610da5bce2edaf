import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import t, { type Test } from 'tap';
import type { Browser, Page } from 'playwright-core';
import { createUser } from '../src/accounts/users.ts';
import { registerClient } from '../src/oauth/clients.ts';
import {
  PASSWORD,
  authorizationParameters,
  authorizePath,
  createPkce,
  obtainTokens,
  postForm,
  registerCodeClient,
} from './helpers/authorization.ts';
import { launchChromium, openPage, saveScreenshot } from './helpers/chromium.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// The pages' Content-Security-Policy (script-src 'self') blocks the inline script that
// page.addScriptTag would add, so axe's source runs through page.evaluate, which the
// DevTools protocol runs outside the page's policy.
const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const COLOUR_SCHEMES = ['light', 'dark'] as const;

// The 38 axe runs and their logins took 58 to 118 seconds in trials on a loaded machine, close
// to the configured 120-second limit.
t.setTimeout(300_000);

interface Violation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; summary: string }[];
}

/** Runs axe-core on the page and returns its violations with the nodes each one names. */
async function runAxe(page: Page): Promise<Violation[]> {
  if (!(await page.evaluate<boolean>('typeof window.axe === "object"'))) await page.evaluate(AXE_SOURCE);
  return page.evaluate<Violation[]>(`axe.run(document).then((results) => results.violations.map((violation) => ({
    id: violation.id,
    impact: violation.impact,
    help: violation.help,
    nodes: violation.nodes.map((node) => ({ target: node.target, summary: node.failureSummary })),
  })))`);
}

function describeViolation(violation: Violation): string {
  const nodes = violation.nodes.map((node) => `    ${node.target.join(' ')}: ${node.summary.replace(/\n\s*/g, ' ')}`);
  return [`${violation.id} (${violation.impact}): ${violation.help}`, ...nodes].join('\n');
}

/**
 * Checks the page in the light and the dark colour scheme and fails on each
 * serious or critical axe-core violation. Moderate and minor ones are printed
 * as comments.
 */
async function checkPage(t: Test, page: Page, name: string): Promise<void> {
  for (const colorScheme of COLOUR_SCHEMES) {
    await page.emulateMedia({ colorScheme });
    const violations = await runAxe(page);
    const blocking = violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical');
    const others = violations.filter((violation) => !blocking.includes(violation));

    for (const violation of others) t.comment(`${name}, ${colorScheme}: ${describeViolation(violation)}`);
    t.equal(blocking.length, 0, `${name}, ${colorScheme}: no serious or critical violations`, {
      violations: blocking.map(describeViolation),
    });
    await saveScreenshot(page, `a11y-${name}-${colorScheme}`);
  }
  await page.emulateMedia({ colorScheme: null });
}

async function logIn(page: Page, email: string): Promise<void> {
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname !== '/accounts/login/');
}

async function openSignedIn(t: Test, browser: Browser, server: TestServer, email: string): Promise<Page> {
  const page = await openPage(t, browser, server.url);
  await page.goto(`${server.url}/accounts/login/`);
  await logIn(page, email);
  return page;
}

function defineTests(browser: Browser, server: TestServer): void {
  const { db, scopes } = server.app.speedgate;
  const url = (path: string) => `${server.url}${path}`;

  t.test('login and signup', async (t) => {
    const page = await openPage(t, browser, server.url);

    await page.goto(url('/accounts/login/'));
    await checkPage(t, page, 'login');

    await page.getByLabel('Email address').fill('nobody@example.com');
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await checkPage(t, page, 'login-error');

    await page.goto(url('/accounts/signup/'));
    await checkPage(t, page, 'signup');
  });

  t.test('consent page', async (t) => {
    const email = 'consent@example.com';
    await createUser(db, { email, password: PASSWORD }, server.clock.now());
    const { client } = await registerCodeClient(server, { name: 'Acme Connector' });
    const page = await openPage(t, browser, server.url);

    const scope = 'read:profile write:profile read:teams';
    await page.goto(url(authorizePath(authorizationParameters(client.id, createPkce(), { scope }))));
    await logIn(page, email);
    await page.getByRole('heading', { level: 1, name: 'Authorize Acme Connector' }).waitFor();
    await checkPage(t, page, 'consent');

    // A dynamically registered client gets the warning badge.
    const unverified = await registerCodeClient(server, { name: 'Self Registered', registrationType: 'dynamic' });
    await page.goto(url(authorizePath(authorizationParameters(unverified.client.id, createPkce(), { scope }))));
    await page.getByRole('heading', { level: 1, name: 'Authorize Self Registered' }).waitFor();
    await checkPage(t, page, 'consent-unverified');
  });

  t.test('device pages', async (t) => {
    const email = 'device@example.com';
    await createUser(db, { email, password: PASSWORD }, server.clock.now());
    const registration = { name: 'Acme CLI', registrationType: 'operator' as const };
    const { client } = await registerClient(db, scopes, registration, server.clock.now());
    const started = await postForm(url('/o/device-authorization/'), { client_id: client.id, scope: 'read:profile write:teams' });
    t.equal(started.status, 200, 'device authorization starts');
    const page = await openSignedIn(t, browser, server, email);

    await page.goto(url('/o/device/'));
    await checkPage(t, page, 'device-entry');

    await page.getByLabel('Code').fill('BBBB');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('alert').waitFor();
    await checkPage(t, page, 'device-entry-error');

    await page.goto(started.body.verification_uri_complete);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { level: 1, name: 'Approve this device?' }).waitFor();
    await checkPage(t, page, 'device-confirm');

    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByRole('alert').waitFor();
    await checkPage(t, page, 'device-confirm-error');

    await page.getByLabel(/matches the one on my device/).check();
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByRole('heading', { level: 1, name: 'Device connected' }).waitFor();
    await checkPage(t, page, 'device-connected');
  });

  t.test('account pages', async (t) => {
    const { client } = await registerCodeClient(server, { name: 'Acme Connector' });
    const { user } = await obtainTokens(server, client.id);
    const page = await openPage(t, browser, server.url);

    // A failed sign-in first, so the security page shows a warning badge.
    await page.goto(url('/accounts/login/'));
    await page.getByLabel('Email address').fill(user.email);
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(url('/'));

    await page.goto(url('/accounts/tokens/'));
    await checkPage(t, page, 'tokens-empty');

    await page.getByLabel('Name', { exact: true }).fill('CI deploy');
    await page.locator('input[name="scope:read:profile"]').check();
    // A 7-day token gets the "expires soon" badge in the list.
    await page.getByLabel('Expires', { exact: true }).selectOption('7');
    await page.getByRole('button', { name: 'Create token' }).click();
    await page.getByRole('heading', { level: 2, name: 'Your new token “CI deploy”' }).waitFor();
    await checkPage(t, page, 'tokens-new');

    await page.goto(url('/accounts/tokens/'));
    await page.locator('li.card', { hasText: 'CI deploy' }).locator('.badge.warn').waitFor();
    await checkPage(t, page, 'tokens-list');

    await page.goto(url('/accounts/applications/'));
    await page.getByRole('heading', { level: 2, name: 'Acme Connector' }).waitFor();
    await checkPage(t, page, 'applications');

    await page.goto(url('/accounts/developer/'));
    await checkPage(t, page, 'developer');

    await page.getByLabel('Application name').fill('My Connector');
    await page.getByLabel(/^Redirect URIs/).fill('https://connector.example/callback');
    await page.getByRole('button', { name: 'Register application' }).click();
    await page.getByRole('heading', { level: 1, name: 'My Connector' }).waitFor();
    await checkPage(t, page, 'developer-app');

    await page.goto(url('/accounts/security/'));
    await page.getByText('Failed sign-in attempt').waitFor();
    await checkPage(t, page, 'security');

    await page.goto(url('/'));
    await checkPage(t, page, 'home');
  });

  t.test('error page', async (t) => {
    const page = await openPage(t, browser, server.url);
    const response = await page.goto(url('/o/authorize/?response_type=code&client_id=unknown'));
    t.equal(response?.status(), 400, 'an unknown client gets an error page');
    await checkPage(t, page, 'error');
  });
}

const browser = await launchChromium(t);
if (browser !== undefined) defineTests(browser, await startServer(t));
