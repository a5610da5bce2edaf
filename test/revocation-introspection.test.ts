import t, { type Test } from 'tap';
import { apiResource } from '../src/oauth/context.ts';
import {
  basicAuthorization,
  decodeJwt,
  obtainTokens,
  postForm,
  profileStatus,
  refresh,
  registerCodeClient,
  type HttpResult,
} from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';

const server = await startServer(t);
const { client } = await registerCodeClient(server);
const { client: resourceServer, clientSecret: resourceSecret } = await registerCodeClient(server, {
  name: 'Resource Server',
  grantTypes: ['client_credentials'],
  redirectUris: [],
  confidential: true,
});

const INACTIVE = { active: false };
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'The refresh_token is invalid, expired or revoked' };

/** Revokes as the public client `clientId` (RFC 7009 section 2.1). */
async function revoke(token: string, clientId = client.id, extra: Record<string, string> = {}): Promise<HttpResult> {
  return postForm(`${server.url}/o/revoke_token/`, { token, client_id: clientId, ...extra });
}

async function introspect(token: string): Promise<HttpResult> {
  return postForm(`${server.url}/o/introspect/`, { token }, { authorization: basicAuthorization(resourceServer.id, resourceSecret!) });
}

function expectRevokeOk(t: Test, result: HttpResult): void {
  t.equal(result.status, 200);
  t.equal(result.body, '', 'empty body');
  t.equal(result.headers.get('cache-control'), 'no-store');
}

async function expectInactive(t: Test, token: string, label: string): Promise<void> {
  const result = await introspect(token);
  t.equal(result.status, 200, `${label}: status`);
  t.strictSame(result.body, INACTIVE, `${label}: exactly {active:false}`);
}

t.test('revoking a refresh token stops the access token', async (t) => {
  const tokens = await obtainTokens(server, client.id);
  t.equal(await profileStatus(server, tokens.accessToken), 200);

  expectRevokeOk(t, await revoke(tokens.refreshToken, client.id, { token_type_hint: 'refresh_token' }));

  const me = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${tokens.accessToken}` } });
  t.equal(me.status, 401, 'the access token fails at once');
  t.match(me.headers.get('www-authenticate'), /^Bearer /);
  t.strictSame(await me.json(), { error: 'invalid_token', error_description: 'The access token has been revoked' });

  const refreshed = await refresh(server, client.id, tokens.refreshToken);
  t.equal(refreshed.status, 400);
  t.strictSame(refreshed.body, INVALID_GRANT);
});

t.test('revoking an access token ends the family', async (t) => {
  const tokens = await obtainTokens(server, client.id);

  expectRevokeOk(t, await revoke(tokens.accessToken, client.id, { token_type_hint: 'access_token' }));
  t.equal(await profileStatus(server, tokens.accessToken), 401);
  const refreshed = await refresh(server, client.id, tokens.refreshToken);
  t.equal(refreshed.status, 400);
  t.strictSame(refreshed.body, INVALID_GRANT);
});

t.test('revoking twice is still 200', async (t) => {
  const tokens = await obtainTokens(server, client.id);

  expectRevokeOk(t, await revoke(tokens.refreshToken));
  expectRevokeOk(t, await revoke(tokens.refreshToken));
  expectRevokeOk(t, await revoke(tokens.accessToken));
});

t.test('unknown tokens get 200', async (t) => {
  for (const token of ['sgr_unknown', 'garbage', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln', 'x'.repeat(4096)]) {
    expectRevokeOk(t, await revoke(token));
  }
});

t.test("another client's token stays active", async (t) => {
  const tokens = await obtainTokens(server, client.id);
  const { client: other } = await registerCodeClient(server, { name: 'Other App' });

  expectRevokeOk(t, await revoke(tokens.refreshToken, other.id));
  expectRevokeOk(t, await revoke(tokens.accessToken, other.id));

  t.equal(await profileStatus(server, tokens.accessToken), 200, 'the access token still works');
  t.equal((await introspect(tokens.refreshToken)).body.active, true, 'the refresh token is still active');
  t.equal((await introspect(tokens.accessToken)).body.active, true, 'the access token is still active');
});

t.test('revocation without a token is invalid_request', async (t) => {
  const result = await postForm(`${server.url}/o/revoke_token/`, { client_id: client.id });
  t.equal(result.status, 400);
  t.strictSame(result.body, { error: 'invalid_request', error_description: 'Missing required parameter: token' });
});

t.test('introspection of an active access token', async (t) => {
  const tokens = await obtainTokens(server, client.id);
  const { payload } = decodeJwt(tokens.accessToken);

  const result = await introspect(tokens.accessToken);
  t.equal(result.status, 200);
  t.equal(result.headers.get('cache-control'), 'no-store');
  t.strictSame(result.body, {
    active: true,
    token_type: 'Bearer',
    token_kind: 'access_token',
    scope: 'read:profile read:teams',
    client_id: client.id,
    sub: tokens.user.id,
    iss: server.url,
    aud: apiResource(server.config),
    exp: payload.exp,
    iat: payload.iat,
    jti: payload.jti,
  });
  t.equal(result.body.exp - result.body.iat, 3600);
});

t.test('introspection of an active refresh token', async (t) => {
  const tokens = await obtainTokens(server, client.id);

  const result = await introspect(tokens.refreshToken);
  t.equal(result.status, 200);
  t.strictSame(Object.keys(result.body).sort(), ['active', 'client_id', 'exp', 'iat', 'iss', 'scope', 'sub', 'token_kind', 'token_type']);
  t.equal(result.body.active, true);
  t.equal(result.body.token_type, 'refresh_token');
  t.equal(result.body.scope, 'read:profile read:teams');
  t.equal(result.body.client_id, client.id);
  t.equal(result.body.sub, tokens.user.id);
  t.equal(result.body.exp - result.body.iat, 30 * 86400, 'refresh tokens live 30 days');
});

t.test('introspection of inactive tokens', async (t) => {
  const revoked = await obtainTokens(server, client.id);
  await revoke(revoked.refreshToken);
  await expectInactive(t, revoked.accessToken, 'revoked access token');
  await expectInactive(t, revoked.refreshToken, 'revoked refresh token');

  const rotated = await obtainTokens(server, client.id);
  const successor = await refresh(server, client.id, rotated.refreshToken);
  t.equal(successor.status, 200);
  await expectInactive(t, rotated.refreshToken, 'rotated refresh token');
  t.equal((await introspect(successor.body.refresh_token)).body.active, true, 'its successor is active');

  for (const garbage of ['garbage', 'sgr_unknown', 'a.b.c', `${rotated.accessToken.slice(0, -4)}AAAA`]) {
    await expectInactive(t, garbage, `garbage ${garbage.slice(0, 12)}`);
  }
});

t.test('introspection of an expired access token', async (t) => {
  const tokens = await obtainTokens(server, client.id);
  server.clock.advance(3601);

  await expectInactive(t, tokens.accessToken, 'expired access token');
  t.equal(await profileStatus(server, tokens.accessToken), 401);
  t.equal((await introspect(tokens.refreshToken)).body.active, true, 'the refresh token outlives it');
});

t.test('introspection by a public client is 401', async (t) => {
  const tokens = await obtainTokens(server, client.id);

  const result = await postForm(`${server.url}/o/introspect/`, { token: tokens.accessToken, client_id: client.id });
  t.equal(result.status, 401);
  t.strictSame(result.body, { error: 'invalid_client', error_description: 'Introspection requires a confidential client' });
  t.equal(result.headers.get('www-authenticate'), 'Basic realm="speedgate"');

  const anonymous = await postForm(`${server.url}/o/introspect/`, { token: tokens.accessToken });
  t.equal(anonymous.status, 401);
  t.strictSame(anonymous.body, { error: 'invalid_client', error_description: 'Client authentication failed' });
  t.equal(anonymous.headers.get('www-authenticate'), 'Basic realm="speedgate"');
});
