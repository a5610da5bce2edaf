import t from 'tap';
import type { Browser, Page } from 'playwright-core';
import { createUser } from '../src/accounts/users.ts';
import { launchChromium, openPage, saveScreenshot, type PageOptions } from './helpers/chromium.ts';
import { startServer, type TestServer } from './helpers/server.ts';

const PASSWORD = 'correct horse battery';
const PHONE: PageOptions = { viewport: { width: 390, height: 844 }, mobile: true };
const TOKEN_SHAPE = /^spd_[0-9A-Za-z]{36}$/;

/** Opens the token page signed out, signs in on the login page it redirects to, and returns there. */
async function signInToTokens(page: Page, server: TestServer, email: string): Promise<void> {
  await createUser(server.app.speedgate.db, { email, password: PASSWORD, name: 'Ada Lovelace' }, server.clock.now());
  await page.goto(`${server.url}/accounts/tokens/`);
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${server.url}/accounts/tokens/`);
}

/** Fills in the create form and submits it, waiting for the page that shows the new token. */
async function createToken(page: Page, name: string, scopes: string[]): Promise<string> {
  await page.getByLabel('Name', { exact: true }).fill(name);
  for (const scope of scopes) await page.locator(`input[name="scope:${scope}"]`).check();
  await page.getByLabel('Expires', { exact: true }).selectOption('7');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.getByRole('heading', { level: 2, name: `Your new token “${name}”` }).waitFor();
  return page.locator('#new-token-value').inputValue();
}

async function callApi(server: TestServer, token: string) {
  const response = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Tells whether the readonly field shows the whole token, with nothing scrolled out of view. */
/**
 * Returns whether the new token's field shows the whole token, reading its width
 * for up to two seconds. NOTE: one clean CI run read an overflow right after the
 * page loaded, which reruns did not reproduce. The cause is not known.
 */
async function showsWholeToken(page: Page): Promise<boolean> {
  const field = page.locator('#new-token-value');
  const deadline = Date.now() + 2000;
  for (;;) {
    const widths = await field.evaluate((element) => [element.scrollWidth, element.clientWidth]);
    if (widths[0] <= widths[1]) return true;
    if (Date.now() > deadline) return false;
    await page.waitForTimeout(100);
  }
}

async function measureWidth(page: Page): Promise<{ scroll: number; client: number }> {
  const scroll = await page.evaluate<number>('document.documentElement.scrollWidth');
  const client = await page.evaluate<number>('document.documentElement.clientWidth');
  return { scroll, client };
}

function defineTests(browser: Browser, server: TestServer): void {
  t.test('token shown once, then revoked', async (t) => {
    const page = await openPage(t, browser, server.url);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await signInToTokens(page, server, 'ada@example.com');
    t.match(await page.getByText('You have no tokens yet.').textContent(), /no tokens/);

    const token = await createToken(page, 'CI deploy', ['read:profile', 'read:teams']);
    t.match(token, TOKEN_SHAPE);
    t.equal(await page.locator('#new-token-value').getAttribute('readonly'), '', 'the token field is readonly');
    t.ok(await showsWholeToken(page), 'the field shows the whole token');
    t.match(await page.getByRole('status').textContent(), /It will not be shown again/);
    await saveScreenshot(page, 'tokens-created');

    const copy = page.locator('button[data-copy="new-token-value"]');
    t.equal(await copy.textContent(), 'Copy', 'the script shows the copy button');
    await copy.click();
    // The label changes once the asynchronous clipboard write has finished.
    await page.locator('button[data-copy="new-token-value"]', { hasText: 'Copied' }).waitFor();
    t.equal(await copy.textContent(), 'Copied', 'the copy button reports success');
    t.equal(await page.evaluate<string>('navigator.clipboard.readText()'), token, 'the clipboard holds the token');

    t.equal((await callApi(server, token)).status, 200, 'the new token calls the API');

    await page.goto(`${server.url}/accounts/tokens/`);
    t.equal(await page.locator('#new-token-value').count(), 0, 'the reloaded page has no token field');
    t.notOk((await page.content()).includes(token), 'the reloaded page never contains the token');
    const card = page.locator('li.card', { hasText: 'CI deploy' });
    t.match(await card.locator('h3 code').textContent(), `${token.slice(0, 10)}…`);
    t.match(await card.textContent(), /read:profile, read:teams/);
    t.match(await card.locator('.badge.warn').textContent(), 'expires soon', 'a 7-day token is flagged');
    await saveScreenshot(page, 'tokens-list');

    await card.getByRole('link', { name: 'Revoke…' }).click();
    await page.getByRole('heading', { level: 1, name: 'Revoke “CI deploy”?' }).waitFor();
    t.match(await page.locator('main p').first().textContent(), `${token.slice(0, 10)}…`);
    await saveScreenshot(page, 'tokens-revoke');

    await page.getByRole('button', { name: 'Revoke token' }).click();
    await page.waitForURL(`${server.url}/accounts/tokens/`);
    const revoked = page.locator('li.card', { hasText: 'CI deploy' });
    t.match(await revoked.locator('dd').first().textContent(), /^revoked at \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/);
    t.equal(await revoked.getByRole('link', { name: 'Revoke…' }).count(), 0, 'a revoked token has no revoke link');
    t.equal(await revoked.locator('.badge.warn').count(), 0, 'a revoked token is not flagged as expiring');
    await saveScreenshot(page, 'tokens-revoked');

    const rejected = await callApi(server, token);
    t.equal(rejected.status, 401);
    t.same(rejected.body, {
      error: 'invalid_token',
      error_description: 'The personal access token is invalid, expired or revoked',
    });
  });

  t.test('form error keeps the input', async (t) => {
    const page = await openPage(t, browser, server.url);
    await signInToTokens(page, server, 'grace@example.com');

    await page.getByLabel('Name', { exact: true }).fill('No scopes');
    await page.getByRole('button', { name: 'Create token' }).click();
    await page.getByRole('alert').waitFor();
    t.equal(await page.getByRole('alert').textContent(), 'Choose at least one scope');
    t.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'No scopes');
    t.equal(await page.locator('#new-token-value').count(), 0);
  });

  t.test('token page fits a phone', async (t) => {
    const page = await openPage(t, browser, server.url, PHONE);
    await signInToTokens(page, server, 'a.very.long.address.for.a.phone@example.com');

    const token = await createToken(page, 'Phone token with a rather long name to wrap', ['read:profile']);
    t.match(token, TOKEN_SHAPE);
    const created = await measureWidth(page);
    t.ok(created.scroll <= created.client, `the created page fits: ${created.scroll} <= ${created.client}`);
    t.ok(await showsWholeToken(page), 'the field shows the whole token on a phone');
    await saveScreenshot(page, 'phone-tokens-created');

    await page.goto(`${server.url}/accounts/tokens/`);
    const listed = await measureWidth(page);
    t.ok(listed.scroll <= listed.client, `the list fits: ${listed.scroll} <= ${listed.client}`);
    await saveScreenshot(page, 'phone-tokens-list');
  });
}

// One server for the file, because starting one takes seconds. Each test signs in as its own user.
const browser = await launchChromium(t);
if (browser !== undefined) defineTests(browser, await startServer(t));
