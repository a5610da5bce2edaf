import t from 'tap';
import { createUser } from '../src/accounts/users.ts';
import { findClient, registerClient } from '../src/oauth/clients.ts';
import { sha256Hex } from '../src/oauth/secrets.ts';
import {
  PASSWORD,
  REDIRECT_URI,
  authorizationParameters,
  authorizePath,
  basicAuthorization,
  createPkce,
  obtainCode,
  postForm,
  profileStatus,
  redeemCode,
  type HttpResult,
} from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer } from './helpers/server.ts';

const SECRET_SHAPE = /^sgs_[A-Za-z0-9_-]{43}$/;
const CSRF_MESSAGE = 'The form has expired or was not sent from this site. Reload the page and try again.';
const LIST_PATH = '/accounts/developer/';

// One server for the whole file, because starting one (database and migrations) takes seconds.
// Each test signs in as its own users.
const server = await startServer(t);
const { db, scopes } = server.app.speedgate;
const tokenUrl = `${server.url}/o/token/`;
let userCount = 0;

/** Creates a user, optionally an administrator, and returns a session signed in as that user. */
async function signIn(options: { isAdmin?: boolean } = {}): Promise<{ email: string; session: BrowserSession }> {
  userCount += 1;
  const email = `developer${userCount}@example.com`;
  await createUser(db, { email, password: PASSWORD, isAdmin: options.isAdmin ?? false }, server.clock.now());

  const session = new BrowserSession(server.url);
  const login = await session.logIn(email, PASSWORD);
  if (login.status !== 303) throw new Error(`login as ${email} failed with ${login.status}`);
  return { email, session };
}

function appPath(clientId: string): string {
  return `${LIST_PATH}${encodeURIComponent(clientId)}/`;
}

function readClientId(html: string): string | undefined {
  return /<code id="client-id">([^<]*)<\/code>/.exec(html)?.[1];
}

/** Returns the secret in the page's readonly field, or undefined when the page shows none. */
function readSecret(html: string): string | undefined {
  return /id="client-secret"[^>]*value="([^"]*)"/.exec(html)?.[1];
}

/** Builds the register form for a confidential app with the given grants and redirect URIs. */
function appForm(name: string, grants: string[], redirectUris: string[] = []): Record<string, string> {
  const fields: Record<string, string> = {
    name,
    // A browser submits a textarea's line breaks as CRLF.
    redirect_uris: redirectUris.join('\r\n'),
    client_type: 'confidential',
    auth_method: 'client_secret_basic',
  };
  for (const grant of grants) fields[`grant:${grant}`] = 'on';
  return fields;
}

/** Registers an app on the developer page and returns the client ID and the secret it shows. */
async function registerApp(session: BrowserSession, fields: Record<string, string>): Promise<{ clientId: string; secret: string; html: string }> {
  const response = await session.submit(LIST_PATH, fields);
  const html = await response.text();
  const clientId = readClientId(html);
  const secret = readSecret(html);
  if (response.status !== 201 || clientId === undefined || secret === undefined) {
    throw new Error(`registering ${fields.name} failed with ${response.status}: ${html.slice(0, 500)}`);
  }
  return { clientId, secret, html };
}

/** Registers a confidential app for the client_credentials grant. */
async function registerServiceApp(session: BrowserSession, name: string) {
  return registerApp(session, appForm(name, ['client_credentials']));
}

/** Registers a confidential app for the authorization code grant with refresh tokens. */
async function registerCodeApp(session: BrowserSession, name: string) {
  return registerApp(session, appForm(name, ['authorization_code', 'refresh_token'], [REDIRECT_URI]));
}

async function clientCredentials(clientId: string, secret: string): Promise<HttpResult> {
  return postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization: basicAuthorization(clientId, secret) });
}

/** Signs `session` through the code flow for `clientId` and redeems the code with the secret. */
async function obtainAccessToken(session: BrowserSession, clientId: string, secret: string): Promise<{ accessToken: string; refreshToken: string }> {
  const issued = await obtainCode(session, clientId, { scope: 'read:profile' });
  const redeemed = await redeemCode(server, clientId, issued, secret);
  if (redeemed.status !== 200) throw new Error(`code redemption failed: ${redeemed.status} ${JSON.stringify(redeemed.body)}`);
  return { accessToken: redeemed.body.access_token, refreshToken: redeemed.body.refresh_token };
}

async function postWithCsrf(session: BrowserSession, formPage: string, target: string, fields: Record<string, string> = {}): Promise<Response> {
  const { csrfToken } = await session.page(formPage);
  return session.post(target, { csrf_token: csrfToken, ...fields });
}

t.test('secret shown once', async (t) => {
  const { session } = await signIn();
  const { clientId, secret, html } = await registerServiceApp(session, 'Nightly Export');
  t.match(secret, SECRET_SHAPE, 'the created page shows the secret');
  t.match(html, /It will not be shown again/);

  const stored = await findClient(db, clientId);
  t.equal(stored?.secret_hash, sha256Hex(secret), 'the database stores only the hash of the secret');

  const again = await session.page(appPath(clientId));
  t.equal(again.status, 200);
  t.equal(readClientId(again.html), clientId, 'the reloaded page shows the client ID');
  t.equal(readSecret(again.html), undefined, 'the reloaded page has no secret field');
  t.notOk(again.html.includes(secret), 'the reloaded page never contains the secret');

  const list = await session.page(LIST_PATH);
  t.ok(list.html.includes(clientId), 'the list names the app');
  t.notOk(list.html.includes(secret), 'the list never contains the secret');

  t.equal((await clientCredentials(clientId, secret)).status, 200, 'the secret authenticates the client');
});

t.test('rotated secret replaces the old', async (t) => {
  const { session } = await signIn();
  const { clientId, secret: oldSecret } = await registerServiceApp(session, 'Billing Sync');
  t.equal((await clientCredentials(clientId, oldSecret)).status, 200, 'the first secret works before rotation');

  const rotated = await postWithCsrf(session, appPath(clientId), `${appPath(clientId)}secret/`);
  const html = await rotated.text();
  t.equal(rotated.status, 200);
  const newSecret = readSecret(html);
  t.match(newSecret, SECRET_SHAPE, 'the page shows the new secret');
  t.not(newSecret, oldSecret, 'the new secret differs from the old one');
  t.notOk(html.includes(oldSecret), 'the page does not show the old secret');

  const rejected = await clientCredentials(clientId, oldSecret);
  t.equal(rejected.status, 401, 'the old secret is rejected at once');
  t.equal(rejected.body.error, 'invalid_client');

  const accepted = await clientCredentials(clientId, newSecret ?? '');
  t.equal(accepted.status, 200, 'the new secret works');
  t.type(accepted.body.access_token, 'string');

  const again = await session.page(appPath(clientId));
  t.equal(readSecret(again.html), undefined, 'the reloaded page no longer shows the new secret');
});

t.test('edit changes name and redirect URIs', async (t) => {
  const { session } = await signIn();
  const { clientId, secret } = await registerCodeApp(session, 'Team Wiki');
  const newUris = ['https://wiki.example/oauth/callback', 'http://127.0.0.1:8123/callback'];

  const saved = await session.submit(appPath(clientId), {
    ...appForm('Team Wiki (staging)', ['authorization_code', 'refresh_token'], newUris),
    auth_method: 'client_secret_basic',
  });
  const savedHtml = await saved.text();
  t.equal(saved.status, 200, 'a two-line redirect URI list saves');
  t.match(savedHtml, /Changes saved\./);
  t.match(savedHtml, /<h1>Team Wiki \(staging\)<\/h1>/, 'the page shows the new name');

  const stored = await findClient(db, clientId);
  t.equal(stored?.name, 'Team Wiki (staging)');
  t.strictSame(stored?.redirect_uris, newUris);
  t.equal(stored?.secret_hash, sha256Hex(secret), 'editing keeps the secret');

  const issued = await obtainCode(session, clientId, { scope: 'read:profile', redirect_uri: newUris[0] });
  t.equal(issued.redirectUri, newUris[0]);
  const redeemed = await redeemCode(server, clientId, issued, secret);
  t.equal(redeemed.status, 200, 'a code issued for the new redirect URI redeems');

  const removedParameters = authorizationParameters(clientId, createPkce(), { redirect_uri: REDIRECT_URI, scope: 'read:profile' });
  const removed = await session.get(authorizePath(removedParameters));
  t.equal(removed.status, 400, 'the removed redirect URI is rejected');
  t.equal(removed.headers.get('location'), null, 'no redirect to the removed URI');
  await removed.arrayBuffer();

  const invalid = await session.submit(appPath(clientId), {
    ...appForm('Team Wiki (renamed again)', ['authorization_code', 'refresh_token'], ['http://wiki.example/callback']),
  });
  const invalidHtml = await invalid.text();
  t.equal(invalid.status, 400, 'a plain-http redirect URI on a public host is rejected');
  t.match(invalidHtml, 'redirect_uri http://wiki.example/callback: http is allowed only for loopback addresses; use https');
  const unchanged = await findClient(db, clientId);
  t.equal(unchanged?.name, 'Team Wiki (staging)', 'the rejected edit keeps the name');
  t.strictSame(unchanged?.redirect_uris, newUris, 'the rejected edit keeps the redirect URIs');
});

t.test('delete revokes tokens at once', async (t) => {
  const { session } = await signIn();
  const { clientId, secret } = await registerCodeApp(session, 'Calendar Bridge');
  const { accessToken, refreshToken } = await obtainAccessToken(session, clientId, secret);
  t.equal(await profileStatus(server, accessToken), 200, 'the access token works before deletion');

  const confirmation = await session.page(`${appPath(clientId)}delete/`);
  t.equal(confirmation.status, 200);
  t.match(confirmation.html, 'Delete “Calendar Bridge”?');
  t.match(confirmation.html, 'Every token issued to it stops working at once');
  t.ok(await findClient(db, clientId), 'showing the confirmation page deletes nothing');

  const deleted = await session.submit(`${appPath(clientId)}delete/`, {});
  t.equal(deleted.status, 303);
  t.equal(deleted.headers.get('location'), LIST_PATH);

  t.equal(await profileStatus(server, accessToken), 401, 'the access token fails at once');
  t.equal(await findClient(db, clientId), undefined, 'the client row is gone');

  const refreshed = await postForm(
    tokenUrl,
    { grant_type: 'refresh_token', refresh_token: refreshToken },
    { authorization: basicAuthorization(clientId, secret) },
  );
  t.equal(refreshed.status, 401, 'the deleted client cannot authenticate');
  t.equal(refreshed.body.error, 'invalid_client');

  t.equal((await session.get(appPath(clientId))).status, 404, 'the app page is gone');
  const list = await session.page(LIST_PATH);
  t.notOk(list.html.includes(clientId), 'the list no longer names the app');
});

t.test('other user cannot reach an app', async (t) => {
  const { session: owner } = await signIn();
  const { clientId, secret } = await registerServiceApp(owner, 'Private Reports');
  const { session: stranger } = await signIn();

  const list = await stranger.page(LIST_PATH);
  t.equal(list.status, 200);
  t.notOk(list.html.includes(clientId), 'the list does not name the app');
  t.notOk(list.html.includes('Private Reports'), 'the list does not show the app name');

  t.equal((await stranger.get(appPath(clientId))).status, 404, 'app page');
  t.equal((await stranger.get(`${appPath(clientId)}delete/`)).status, 404, 'delete confirmation page');

  // A valid CSRF token from the stranger's own page, so only ownership can stop these.
  const edit = await postWithCsrf(stranger, LIST_PATH, appPath(clientId), appForm('Taken Over', ['client_credentials']));
  t.equal(edit.status, 404, 'edit');
  const rotate = await postWithCsrf(stranger, LIST_PATH, `${appPath(clientId)}secret/`);
  t.equal(rotate.status, 404, 'secret rotation');
  const rotateHtml = await rotate.text();
  t.equal(readSecret(rotateHtml), undefined, 'no secret is shown');
  const remove = await postWithCsrf(stranger, LIST_PATH, `${appPath(clientId)}delete/`);
  t.equal(remove.status, 404, 'delete');

  const stored = await findClient(db, clientId);
  t.equal(stored?.name, 'Private Reports', 'the app keeps its name');
  t.equal(stored?.secret_hash, sha256Hex(secret), 'the app keeps its secret');
  t.equal((await clientCredentials(clientId, secret)).status, 200, 'the owner secret still works');
});

t.test('admin manages every app', async (t) => {
  const { email: ownerEmail, session: owner } = await signIn();
  const { clientId: userAppId } = await registerServiceApp(owner, 'Owned Dashboard');
  const { client: operatorApp } = await registerClient(
    db,
    scopes,
    { name: 'Operator Console', grantTypes: ['client_credentials'], confidential: true, registrationType: 'operator' },
    server.clock.now(),
  );
  const { session: admin } = await signIn({ isAdmin: true });

  const list = await admin.page(LIST_PATH);
  t.equal(list.status, 200);
  t.ok(list.html.includes(userAppId), 'the list names the user app');
  t.ok(list.html.includes(operatorApp.id), 'the list names the app registered without the page');
  t.ok(list.html.includes(ownerEmail), 'the list shows the owner');
  t.match(list.html, 'no owner', 'the operator app has no owner');

  t.equal((await admin.get(appPath(userAppId))).status, 200, 'the admin opens a user app');
  const operatorPage = await admin.page(appPath(operatorApp.id));
  t.equal(operatorPage.status, 200, 'the admin opens the operator app');
  t.equal(readClientId(operatorPage.html), operatorApp.id);

  const deleted = await admin.submit(`${appPath(operatorApp.id)}delete/`, {});
  t.equal(deleted.status, 303, 'the admin deletes the operator app');
  t.equal(await findClient(db, operatorApp.id), undefined, 'the operator app is gone');
  t.ok(await findClient(db, userAppId), 'the user app remains');

  const ownerList = await owner.page(LIST_PATH);
  t.notOk(ownerList.html.includes(operatorApp.id), 'a user does not see apps without an owner');
});

t.test('missing CSRF token changes nothing', async (t) => {
  const { session } = await signIn();
  const { clientId, secret } = await registerServiceApp(session, 'Audit Feed');
  const before = await findClient(db, clientId);
  const countClients = async () => (await db.selectFrom('clients').select('id').execute()).length;
  const clientCount = await countClients();

  const attempts: Array<[string, string, Record<string, string>]> = [
    ['register', LIST_PATH, appForm('Sneaky App', ['client_credentials'])],
    ['edit', appPath(clientId), appForm('Renamed Feed', ['client_credentials'])],
    ['secret rotation', `${appPath(clientId)}secret/`, {}],
    ['delete', `${appPath(clientId)}delete/`, {}],
  ];
  for (const [action, path, fields] of attempts) {
    const response = await session.post(path, fields);
    t.equal(response.status, 403, `${action} without a CSRF token`);
    t.match(await response.text(), CSRF_MESSAGE, `${action} explains the rejection`);
  }

  t.equal(await countClients(), clientCount, 'no app was registered');
  const after = await findClient(db, clientId);
  t.equal(after?.name, before?.name, 'the name is unchanged');
  t.equal(after?.secret_hash, sha256Hex(secret), 'the secret is unchanged');
  t.equal((await clientCredentials(clientId, secret)).status, 200, 'the secret still works');
});
