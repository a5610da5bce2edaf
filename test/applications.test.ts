import t from 'tap';
import { findConsentedScopes } from '../src/oauth/consents.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import {
  authorizationParameters,
  authorizePath,
  createPkce,
  obtainCode,
  obtainTokens,
  profileStatus,
  redeemCode,
  refresh,
  registerCodeClient,
} from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';

const server = await startServer(t);
const { db } = server.app.speedgate;

const PAGE = '/accounts/applications/';
const REVOKE = '/accounts/applications/revoke/';

t.test('page lists an authorized app', async (t) => {
  const { client } = await registerCodeClient(server, { name: 'Reporting Dashboard' });
  const { browser } = await obtainTokens(server, client.id, 'read:profile read:teams');

  const page = await browser.page(PAGE);
  t.equal(page.status, 200);
  t.match(page.html, /<h2>Reporting Dashboard<\/h2>/);
  t.match(page.html, /<dt>Allowed to<\/dt><dd>Read your name and email address, See your teams and their members<\/dd>/);
  t.match(page.html, new RegExp(`name="client_id" value="${client.id}"`));
  t.match(page.html, /<dt>Last used<\/dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d UTC<\/dd>/);
});

t.test("page lists only the user's apps", async (t) => {
  const { client: theirs } = await registerCodeClient(server, { name: 'Approved By Someone Else' });
  await obtainTokens(server, theirs.id);
  const { client: mine } = await registerCodeClient(server, { name: 'Mine' });
  const { browser } = await obtainTokens(server, mine.id);

  const page = await browser.page(PAGE);
  t.notMatch(page.html, /Approved By Someone Else/, "another user's app is not listed");
  t.match(page.html, /<h2>Mine<\/h2>/);
});

t.test('revoking ends consent and tokens', async (t) => {
  const { client } = await registerCodeClient(server, { name: 'Revoked Connector' });
  const tokens = await obtainTokens(server, client.id);
  const refreshed = await refresh(server, client.id, tokens.refreshToken);
  t.equal(refreshed.status, 200);

  const page = await tokens.browser.page(PAGE);
  const revoked = await tokens.browser.post(REVOKE, { csrf_token: page.csrfToken, client_id: client.id });
  t.equal(revoked.status, 303);
  t.equal(revoked.headers.get('location'), PAGE);

  t.equal(await profileStatus(server, tokens.accessToken), 401, 'the first access token fails at once');
  t.equal(await profileStatus(server, refreshed.body.access_token), 401, 'the refreshed access token fails at once');
  const again = await refresh(server, client.id, refreshed.body.refresh_token);
  t.equal(again.status, 400);
  t.strictSame(again.body, { error: 'invalid_grant', error_description: 'The refresh_token is invalid, expired or revoked' });

  t.strictSame(await findConsentedScopes(db, tokens.user.id, client.id), [], 'the consent is gone');
  const after = await tokens.browser.page(PAGE);
  t.notMatch(after.html, /Revoked Connector/);
  t.match(after.html, /You have not authorized any application\./);

  const request = await tokens.browser.get(authorizePath(authorizationParameters(client.id, createPkce())));
  t.equal(request.status, 200, 'the next request asks for consent again');
  await request.arrayBuffer();
});

t.test('revoking voids unredeemed codes', async (t) => {
  const { client } = await registerCodeClient(server, { name: 'Slow Connector' });
  const tokens = await obtainTokens(server, client.id);
  const pending = await obtainCode(tokens.browser, client.id);

  const page = await tokens.browser.page(PAGE);
  const revoked = await tokens.browser.post(REVOKE, { csrf_token: page.csrfToken, client_id: client.id });
  t.equal(revoked.status, 303);

  const redeemed = await redeemCode(server, client.id, pending);
  t.equal(redeemed.status, 400, 'a code issued before the revocation yields no tokens');
  t.strictSame(redeemed.body, { error: 'invalid_grant', error_description: 'The authorization code is invalid' });
});

t.test('revoking without CSRF token is 403', async (t) => {
  const { client } = await registerCodeClient(server);
  const tokens = await obtainTokens(server, client.id);

  for (const csrf of [undefined, '', 'x'.repeat(43)]) {
    const fields: Record<string, string> = { client_id: client.id };
    if (csrf !== undefined) fields.csrf_token = csrf;
    const response = await tokens.browser.post(REVOKE, fields);
    t.equal(response.status, 403);
    t.ok((await response.text()).includes('The form has expired or was not sent from this site. Reload the page and try again.'));
  }

  t.equal(await profileStatus(server, tokens.accessToken), 200, 'the tokens still work');
  t.strictSame(await findConsentedScopes(db, tokens.user.id, client.id), ['read:profile', 'read:teams']);
});

t.test("user cannot revoke another user's authorization", async (t) => {
  const { client } = await registerCodeClient(server, { name: 'Shared Connector' });
  const victim = await obtainTokens(server, client.id);
  const attacker = await obtainTokens(server, (await registerCodeClient(server, { name: 'Attacker App' })).client.id);

  const page = await attacker.browser.page(PAGE);
  const posted = await attacker.browser.post(REVOKE, { csrf_token: page.csrfToken, client_id: client.id });
  t.equal(posted.status, 303);

  t.equal(await profileStatus(server, victim.accessToken), 200, "the victim's access token still works");
  const refreshed = await refresh(server, client.id, victim.refreshToken);
  t.equal(refreshed.status, 200, "the victim's refresh token still works");
  t.strictSame(await findConsentedScopes(db, victim.user.id, client.id), ['read:profile', 'read:teams'], "the victim's consent stays");
  t.match((await victim.browser.page(PAGE)).html, /Shared Connector/);
  t.equal(await profileStatus(server, attacker.accessToken), 200, "the attacker's own app is untouched");
});

t.test('revoking needs a signed-in user', async (t) => {
  const anonymous = new BrowserSession(server.url);

  const page = await anonymous.get(PAGE);
  t.equal(page.status, 303);
  t.equal(page.headers.get('location'), `/accounts/login/?next=${encodeURIComponent(PAGE)}`);

  const posted = await anonymous.post(REVOKE, { client_id: 'anything' });
  t.equal(posted.status, 303);
  t.match(posted.headers.get('location'), /^\/accounts\/login\//);
});
