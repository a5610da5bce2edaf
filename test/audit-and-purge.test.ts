import t from 'tap';
import { purgeExpired } from '../src/maintenance.ts';
import { rotateSigningKey } from '../src/oauth/keys.ts';
import { sha256Hex } from '../src/oauth/secrets.ts';
import {
  createSignedInUser,
  decodeJwt,
  obtainCode,
  obtainTokens,
  PASSWORD,
  postForm,
  redeemCode,
  refresh,
  registerCodeClient,
  REDIRECT_URI,
} from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { cleanEnv, run } from './helpers/cli.ts';
import { createTestDatabase } from './helpers/database.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { basicAuthorization, createTestClient, createTestUser, startDevice } from './helpers/tokens.ts';

const DAY = 86_400;

async function postJson(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

async function auditEvents(server: TestServer) {
  await server.app.speedgate.audit.flush();
  return server.app.speedgate.db.selectFrom('audit_events').selectAll().orderBy('created_at').execute();
}

t.test('audit log records security events', async (t) => {
  const server = await startServer(t);
  const { client } = await registerCodeClient(server);
  const email = `audited-${Date.now()}@example.com`;
  const user = await createTestUser(server, email);
  const secrets: string[] = [PASSWORD];

  const browser = new BrowserSession(server.url);
  const failed = await browser.logIn(email, 'wrong password');
  t.equal(failed.status, 401);
  await failed.arrayBuffer();
  const login = await browser.logIn(email, PASSWORD);
  t.equal(login.status, 303);

  const issued = await obtainCode(browser, client.id);
  secrets.push(issued.code, issued.pkce.verifier);
  const redeemed = await redeemCode(server, client.id, issued);
  t.equal(redeemed.status, 200);
  const refreshed = await refresh(server, client.id, redeemed.body.refresh_token);
  t.equal(refreshed.status, 200);
  secrets.push(redeemed.body.refresh_token, refreshed.body.refresh_token, refreshed.body.access_token);

  // A second use of the code and a reuse of a rotated refresh token, each after the grace window.
  const replayed = await redeemCode(server, client.id, issued);
  t.equal(replayed.status, 400, 'the replayed code is rejected');
  const chain = await obtainTokens(server, client.id);
  const next = await refresh(server, client.id, chain.refreshToken);
  server.clock.advance(61);
  const reused = await refresh(server, client.id, chain.refreshToken);
  t.equal(reused.status, 400, 'the rotated refresh token is rejected');
  secrets.push(chain.refreshToken, next.body.refresh_token);

  const revokedChain = await obtainTokens(server, client.id);
  const revoked = await postForm(`${server.url}/o/revoke_token/`, { token: revokedChain.refreshToken, client_id: client.id });
  t.equal(revoked.status, 200);
  secrets.push(revokedChain.refreshToken);

  const registered = await postJson(`${server.url}/o/register/`, { client_name: 'Audited app', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' });
  t.equal(registered.status, 201);
  secrets.push(registered.body.registration_access_token);

  const events = await auditEvents(server);
  // Events recorded within one millisecond share a timestamp, so the comparison ignores order.
  const mine = events.filter((event) => event.user_id === user.id).map((event) => event.event).sort();
  t.strictSame(mine, ['code_reuse_detected', 'consent_granted', 'login_failed', 'login_succeeded', 'token_issued', 'token_refreshed'], "the user's own events");

  const find = (name: string) => events.filter((event) => event.event === name);
  t.equal(find('login_failed')[0]?.ip_address, '127.0.0.1', 'a failed login records the address');
  t.equal(find('consent_granted')[0]?.client_id, client.id, 'consent names the client');
  t.equal(find('consent_granted')[0]?.detail, 'read:profile read:teams', 'consent records the granted scopes');
  t.equal(find('token_issued').length, 3, 'three code redemptions issued tokens');
  t.equal(find('token_issued')[0]?.detail, 'authorization_code: read:profile read:teams');
  t.equal(find('token_refreshed').length, 2, 'two refreshes');
  t.equal(find('refresh_token_reuse_detected').length, 1, 'the reuse is recorded');
  t.equal(find('refresh_token_reuse_detected')[0]?.client_id, client.id);
  t.equal(find('code_reuse_detected').length, 1, 'the code replay is recorded');
  t.equal(find('token_revoked')[0]?.detail, 'refresh_token', 'revocation records the kind of token');
  t.equal(find('client_registered')[0]?.client_id, registered.body.client_id, 'registration names the new client');
  t.equal(find('client_registered')[0]?.detail, 'dynamic registration');

  const stored = JSON.stringify(events);
  t.strictSame(
    secrets.filter((secret) => stored.includes(secret)),
    [],
    'no password, code, verifier or token appears in the audit log',
  );
});

t.test('security page shows only own events', async (t) => {
  const server = await startServer(t);
  const alice = await createSignedInUser(server);
  const bob = await createSignedInUser(server);

  const bobToken = await bob.browser.submit('/accounts/tokens/', { name: 'bob-private-token', 'scope:read:profile': 'on', expires: '30' });
  t.equal(bobToken.status, 201);
  await bobToken.arrayBuffer();
  const aliceToken = await alice.browser.submit('/accounts/tokens/', { name: 'alice-own-token', 'scope:read:profile': 'on', expires: '30' });
  t.equal(aliceToken.status, 201);
  await aliceToken.arrayBuffer();
  const stranger = new BrowserSession(server.url);
  await (await stranger.logIn(bob.user.email, 'wrong password')).arrayBuffer();

  const alicePage = await (await alice.browser.get('/accounts/security/')).text();
  t.match(alicePage, 'Signed in', "Alice sees her sign-in");
  t.match(alicePage, 'alice-own-token', 'Alice sees her token being created');
  t.notMatch(alicePage, 'bob-private-token', "Alice never sees Bob's token");
  t.notMatch(alicePage, 'Failed sign-in attempt', "Alice never sees the failed sign-in on Bob's account");

  const bobPage = await (await bob.browser.get('/accounts/security/')).text();
  t.match(bobPage, 'bob-private-token', 'Bob sees his token being created');
  t.match(bobPage, 'Failed sign-in attempt', 'Bob sees the failed sign-in on his account');
  t.notMatch(bobPage, 'alice-own-token', "Bob never sees Alice's token");

  const anonymous = await new BrowserSession(server.url).get('/accounts/security/');
  t.equal(anonymous.status, 303, 'signed out, the page sends the browser to log in');
  t.match(anonymous.headers.get('location') ?? '', /^\/accounts\/login\/\?next=/);
});

t.test('purge deletes expired rows only', async (t) => {
  const server = await startServer(t, { env: { SESSION_TTL: '300', REFRESH_TOKEN_TTL: String(3 * DAY), DCR_UNUSED_CLIENT_DAYS: '1' } });
  const { db } = server.app.speedgate;
  const purge = () => purgeExpired(db, server.config);

  // Everything below is created at the same moment, so its expiry follows from its lifetime.
  const { client } = await registerCodeClient(server);
  const { user, browser } = await createSignedInUser(server);
  const code = await obtainCode(browser, client.id);
  const { client: deviceClient } = await createTestClient(server);
  const device = await startDevice(server, deviceClient.id);
  const chain = await obtainTokens(server, client.id);
  const rotated = await refresh(server, client.id, chain.refreshToken);
  t.equal(rotated.status, 200);
  await (await new BrowserSession(server.url).logIn(user.email, 'wrong password')).arrayBuffer();

  const unused = await postJson(`${server.url}/o/register/`, { client_name: 'Never used', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' });
  const used = await postJson(`${server.url}/o/register/`, { client_name: 'Used service', grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic' });
  const usedToken = await postForm(`${server.url}/o/token/`, { grant_type: 'client_credentials' }, { authorization: basicAuthorization(used.body.client_id, used.body.client_secret) });
  t.equal(usedToken.status, 200, 'the second dynamic client is used once');

  const codeExists = async (raw: string) => (await db.selectFrom('authorization_codes').select('id').where('code_hash', '=', sha256Hex(raw)).execute()).length === 1;
  const deviceCodeExists = async (id: string) => (await db.selectFrom('device_codes').select('id').where('id', '=', id).execute()).length === 1;
  const clientExists = async (id: string) => (await db.selectFrom('clients').select('id').where('id', '=', id).execute()).length === 1;
  const refreshRow = (raw: string) => db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', sha256Hex(raw)).executeTakeFirst();

  const fresh = await purge();
  t.strictSame(
    Object.entries(fresh).filter(([, count]) => count > 0),
    [],
    'nothing is deleted while everything is still valid',
  );

  server.clock.advance(2 * DAY);
  const later = await purge();
  t.ok(later.authorization_codes >= 1, `expired codes are deleted (${later.authorization_codes})`);
  t.notOk(await codeExists(code.code), 'the unredeemed code is gone');
  t.notOk(await deviceCodeExists(device.rowId), 'the expired device code is gone');
  t.ok(later.sessions >= 2, `expired sessions are deleted (${later.sessions})`);
  t.equal((await db.selectFrom('sessions').select('user_id').where('user_id', '=', user.id).execute()).length, 0, "the user's sessions are gone");
  t.ok(later.rate_limits >= 1, `ended rate-limit windows are deleted (${later.rate_limits})`);
  t.equal((await db.selectFrom('rate_limits').select('key').execute()).length, 0, 'no rate-limit row is left');
  t.notOk(await clientExists(unused.body.client_id), 'the dynamic client never used is deleted after a day');
  t.ok(await clientExists(used.body.client_id), 'the dynamic client that was used stays');
  t.ok(await clientExists(client.id), 'the operator client stays');
  t.equal(later.refresh_tokens, 0, 'refresh tokens that have not expired stay');

  const kept = await refreshRow(chain.refreshToken);
  t.not(kept?.rotated_at, null, 'the rotated refresh token is still stored');
  t.equal(kept?.successor_response, null, 'its sealed retry response is cleared after the grace window');
  const reuse = await refresh(server, client.id, chain.refreshToken);
  t.equal(reuse.status, 400, 'presenting the rotated token after the purge is still detected as reuse');
  t.strictSame(reuse.body, { error: 'invalid_grant', error_description: 'The refresh_token is invalid, expired or revoked' });
  const successor = await refresh(server, client.id, rotated.body.refresh_token);
  t.equal(successor.status, 400, 'the reuse revoked the whole family');

  server.clock.advance(2 * DAY);
  const expired = await purge();
  t.ok(expired.refresh_tokens >= 2, `expired refresh tokens are deleted (${expired.refresh_tokens})`);
  t.equal(await refreshRow(chain.refreshToken), undefined, 'the rotated token is gone once it has expired');
  t.equal(await refreshRow(rotated.body.refresh_token), undefined, 'its successor is gone too');
  t.ok(await clientExists(used.body.client_id), 'a used dynamic client is never purged');
});

t.test('signing key rotation keeps old tokens', async (t) => {
  const server = await startServer(t);
  const { keys, db } = server.app.speedgate;
  const service = await createTestClient(server, { name: 'Rotation service', grantTypes: ['client_credentials'], confidential: true });
  const credentials = { authorization: basicAuthorization(service.client.id, service.clientSecret ?? '') };
  const issue = async () => (await postForm(`${server.url}/o/token/`, { grant_type: 'client_credentials' }, credentials)).body.access_token as string;
  const jwksKids = async () => ((await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
  const products = async (token: string) => {
    const response = await fetch(`${server.url}/api/v1/products/`, { headers: { authorization: `Bearer ${token}` } });
    await response.arrayBuffer();
    return response.status;
  };

  const oldToken = await issue();
  const oldKid = String(decodeJwt(oldToken).header.kid);
  t.strictSame(await jwksKids(), [oldKid], 'one key before the rotation');

  const newKid = await rotateSigningKey(db, server.clock.now());
  await keys.reload();
  t.strictSame((await jwksKids()).sort(), [oldKid, newKid].sort(), 'the JWKS serves the old and the new key');

  const newToken = await issue();
  t.equal(decodeJwt(newToken).header.kid, newKid, 'new tokens carry the new kid');
  t.equal(await products(oldToken), 200, 'a token signed with the old key still verifies');
  t.equal(await products(newToken), 200, 'a token signed with the new key verifies');

  // Once every token the old key signed has expired, the key leaves the JWKS, and a day later the table.
  server.clock.advance(server.config.accessTokenTtlSeconds + 1);
  await keys.reload();
  t.strictSame(await jwksKids(), [newKid], 'the retired key leaves the JWKS after the token lifetime');
  await purgeExpired(db, server.config);
  t.equal((await db.selectFrom('signing_keys').select('kid').where('kid', '=', oldKid).execute()).length, 1, 'the retired key row stays a day longer');
  server.clock.advance(DAY);
  await purgeExpired(db, server.config);
  t.strictSame((await db.selectFrom('signing_keys').select('kid').execute()).map((row) => row.kid), [newKid], 'the purge deletes the retired key');
});

t.test('rotate-signing-key command rotates', async (t) => {
  // PGlite serves one process at a time, so the command runs while no server is open.
  const database = await createTestDatabase({ onDisk: true });
  t.teardown(() => database.drop());

  const first = await startServer(t, { database });
  const service = await createTestClient(first, { name: 'Command service', grantTypes: ['client_credentials'], confidential: true });
  const credentials = { authorization: basicAuthorization(service.client.id, service.clientSecret ?? '') };
  const before = await postForm(`${first.url}/o/token/`, { grant_type: 'client_credentials' }, credentials);
  const oldKid = decodeJwt(before.body.access_token).header.kid;
  await first.app.close();

  const result = await run('bin/rotate-signing-key', [], cleanEnv(database.env));
  t.equal(result.code, 0, `the command exits 0 (${result.stderr})`);
  const newKid = /^New signing key (\S+) is active; the previous key is retired\.$/m.exec(result.stdout)?.[1];
  t.ok(newKid, `the command prints the new kid: ${result.stdout}`);

  // The restarted server keeps the issuer, so tokens signed before the restart name it.
  const second = await startServer(t, { database, env: { ISSUER: first.config.issuer } });
  const address = second.app.server.address();
  const secondUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  const jwks = (await (await fetch(`${secondUrl}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
  t.strictSame(jwks.keys.map((key) => key.kid).sort(), [oldKid, newKid].sort(), 'the restarted server serves both keys');
  const after = await postForm(`${secondUrl}/o/token/`, { grant_type: 'client_credentials' }, credentials);
  t.equal(decodeJwt(after.body.access_token).header.kid, newKid, 'new tokens carry the new kid');
  const oldStillValid = await postForm(`${secondUrl}/o/introspect/`, { token: before.body.access_token }, credentials);
  t.equal(oldStillValid.body.active, true, 'the token signed before the rotation is still active');
});
