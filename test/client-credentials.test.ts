import t, { type Test } from 'tap';
import { apiResource } from '../src/oauth/context.ts';
import { basicAuthorization, decodeJwt, postForm, registerCodeClient, type HttpResult } from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';

const server = await startServer(t);
const tokenUrl = `${server.url}/o/token/`;
const { db } = server.app.speedgate;

async function registerServiceClient() {
  const { client, clientSecret } = await registerCodeClient(server, {
    name: 'Nightly Export',
    grantTypes: ['client_credentials'],
    redirectUris: [],
    scopes: ['read:products', 'read:profile'],
    confidential: true,
  });
  return { client, secret: clientSecret! };
}

async function requestToken(clientId: string, secret: string, fields: Record<string, string> = {}): Promise<HttpResult> {
  return postForm(tokenUrl, { grant_type: 'client_credentials', ...fields }, { authorization: basicAuthorization(clientId, secret) });
}

async function countGrants(clientId: string): Promise<number> {
  const rows = await db.selectFrom('grants').select('id').where('client_id', '=', clientId).execute();
  return rows.length;
}

function expectError(t: Test, result: HttpResult, status: number, error: string, description: string): void {
  t.equal(result.status, status);
  t.strictSame(result.body, { error, error_description: description });
}

t.test('confidential client gets an access token', async (t) => {
  const { client, secret } = await registerServiceClient();

  const issued = await requestToken(client.id, secret);
  t.equal(issued.status, 200);
  t.equal(issued.headers.get('cache-control'), 'no-store');
  t.strictSame(Object.keys(issued.body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'], 'no refresh_token');
  t.equal(issued.body.token_type, 'Bearer');
  t.equal(issued.body.expires_in, 3600);
  t.equal(issued.body.scope, 'read:profile read:products', "the client's scopes by default");

  const { header, payload } = decodeJwt(issued.body.access_token);
  t.equal(header.typ, 'at+jwt');
  t.equal(payload.aud, apiResource(server.config), 'aud is the API');
  t.equal(payload.sub, client.id, 'the client acts for itself');
  t.equal(payload.client_id, client.id);
  t.equal(payload.iss, server.url);

  const products = await fetch(`${server.url}/api/v1/products/`, { headers: { authorization: `Bearer ${issued.body.access_token}` } });
  t.equal(products.status, 200, 'the API accepts the token');
  await products.arrayBuffer();
});

t.test('client_secret_post works too', async (t) => {
  const { client, secret } = await registerServiceClient();

  const issued = await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: client.id, client_secret: secret });
  t.equal(issued.status, 200);
  t.equal(issued.body.scope, 'read:profile read:products');
});

t.test('narrower scope is honoured', async (t) => {
  const { client, secret } = await registerServiceClient();

  const issued = await requestToken(client.id, secret, { scope: 'read:products' });
  t.equal(issued.status, 200);
  t.equal(issued.body.scope, 'read:products');
  t.equal(decodeJwt(issued.body.access_token).payload.scope, 'read:products');

  const profile = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${issued.body.access_token}` } });
  t.equal(profile.status, 403, 'the narrowed token lacks read:profile');
  await profile.arrayBuffer();
});

t.test('scope outside the client is invalid_scope', async (t) => {
  const { client, secret } = await registerServiceClient();

  expectError(t, await requestToken(client.id, secret, { scope: 'read:products write:teams' }), 400, 'invalid_scope', 'The client may not request the scope write:teams');
  expectError(t, await requestToken(client.id, secret, { scope: 'admin' }), 400, 'invalid_scope', 'The scope admin cannot be granted to applications');
});

t.test('resource other than the API is invalid_target', async (t) => {
  const { client, secret } = await registerServiceClient();

  const api = await requestToken(client.id, secret, { resource: `${apiResource(server.config)}/` });
  t.equal(api.status, 200, 'the API with a trailing slash');
  t.equal(decodeJwt(api.body.access_token).payload.aud, apiResource(server.config));

  expectError(
    t,
    await requestToken(client.id, secret, { resource: 'https://attacker.example/api' }),
    400,
    'invalid_target',
    'The resource https://attacker.example/api is not served by this authorization server',
  );
});

t.test('public client is unauthorized_client', async (t) => {
  const { client } = await registerCodeClient(server, { name: 'Public App' });

  // RFC 6749 section 5.2: unauthorized_client is for a client not allowed this grant type.
  const result = await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: client.id });
  expectError(t, result, 400, 'unauthorized_client', 'The client is not allowed to use the grant_type client_credentials');
  t.equal(await countGrants(client.id), 0);

  // Even with the grant type forced into its row, a client without a secret gets no token (RFC 6749 section 4.4).
  // The row changes before the server first reads it, so no cached copy hides the change.
  const { client: forcedClient } = await registerCodeClient(server, { name: 'Forced Public App' });
  await db
    .updateTable('clients')
    .set({ grant_types: JSON.stringify(['authorization_code', 'client_credentials']) })
    .where('id', '=', forcedClient.id)
    .execute();
  const forced = await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: forcedClient.id });
  expectError(t, forced, 400, 'unauthorized_client', 'client_credentials requires a confidential client');
  t.equal(await countGrants(forcedClient.id), 0);
});

t.test('wrong secret is invalid_client', async (t) => {
  const { client, secret } = await registerServiceClient();

  const result = await requestToken(client.id, `${secret}x`);
  expectError(t, result, 401, 'invalid_client', 'Client authentication failed');
  t.equal(result.headers.get('www-authenticate'), 'Basic realm="speedgate"');
  t.equal(await countGrants(client.id), 0);
});

t.test('many requests add no grants rows', async (t) => {
  const { client, secret } = await registerServiceClient();

  const tokens = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const issued = await requestToken(client.id, secret, i % 2 === 0 ? {} : { scope: 'read:products' });
    t.equal(issued.status, 200);
    tokens.add(issued.body.access_token);
  }
  t.equal(tokens.size, 10, 'each request gets a new access token');
  t.equal(await countGrants(client.id), 1, 'one authorization for all of them');
});

t.test('concurrent first requests share one grant', async (t) => {
  const { client, secret } = await registerServiceClient();

  const results = await Promise.all(Array.from({ length: 10 }, () => requestToken(client.id, secret)));
  t.strictSame(
    results.map((result) => result.status),
    Array(10).fill(200),
  );
  t.equal(await countGrants(client.id), 1);
});

t.test('revoking one token stops them all', async (t) => {
  const { client, secret } = await registerServiceClient();
  const first = await requestToken(client.id, secret);
  const second = await requestToken(client.id, secret);

  const revoked = await postForm(`${server.url}/o/revoke_token/`, { token: first.body.access_token }, { authorization: basicAuthorization(client.id, secret) });
  t.equal(revoked.status, 200);

  for (const token of [first.body.access_token, second.body.access_token]) {
    const products = await fetch(`${server.url}/api/v1/products/`, { headers: { authorization: `Bearer ${token}` } });
    t.equal(products.status, 401);
    await products.arrayBuffer();
  }

  const fresh = await requestToken(client.id, secret);
  t.equal(fresh.status, 200, 'a new request starts a new authorization');
  const products = await fetch(`${server.url}/api/v1/products/`, { headers: { authorization: `Bearer ${fresh.body.access_token}` } });
  t.equal(products.status, 200);
  await products.arrayBuffer();
  t.equal(await countGrants(client.id), 2);
});
