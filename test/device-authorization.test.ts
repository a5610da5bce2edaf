import t from 'tap';
import { findDeviceCode, normalizeUserCode } from '../src/oauth/device-codes.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import {
  basicAuthorization,
  createTestClient,
  createTestUser,
  decideDevice,
  postForm,
  redeemDevice,
  startDevice,
} from './helpers/tokens.ts';

let server: TestServer;
let endpoint: string;

t.before(async () => {
  server = await startServer(t);
  endpoint = `${server.url}/o/device-authorization/`;
});

const clientFailure = { error: 'invalid_client', error_description: 'Client authentication failed' };

t.test('unknown client is invalid_client', async (t) => {
  const response = await postForm(endpoint, { client_id: 'no-such-client' });

  t.equal(response.status, 401);
  t.same(response.body, clientFailure);
});

t.test('missing client_id is invalid_client', async (t) => {
  const response = await postForm(endpoint, { scope: 'read:profile' });

  t.equal(response.status, 401);
  t.same(response.body, clientFailure);
});

t.test('client without device grant is unauthorized', async (t) => {
  const { client } = await createTestClient(server, { grantTypes: ['refresh_token'] });
  const response = await postForm(endpoint, { client_id: client.id });

  t.equal(response.status, 400);
  t.same(response.body, {
    error: 'unauthorized_client',
    error_description: 'The client is not allowed to use the device authorization grant',
  });
});

t.test('scope outside the registry is rejected', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(endpoint, { client_id: client.id, scope: 'read:profile delete:everything' });

  t.equal(response.status, 400);
  t.same(response.body, { error: 'invalid_scope', error_description: 'Unknown scope: delete:everything' });
});

t.test('reserved admin scope is rejected', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(endpoint, { client_id: client.id, scope: 'read:profile admin' });

  t.equal(response.status, 400);
  t.same(response.body, {
    error: 'invalid_scope',
    error_description: 'The scope admin cannot be granted to applications',
  });
});

t.test('scope the client may not hold', async (t) => {
  const { client } = await createTestClient(server, { scopes: ['read:profile'] });
  const response = await postForm(endpoint, { client_id: client.id, scope: 'read:profile write:teams' });

  t.equal(response.status, 400);
  t.same(response.body, {
    error: 'invalid_scope',
    error_description: 'The client may not request the scope write:teams',
  });
});

t.test('scope of only spaces is rejected', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(endpoint, { client_id: client.id, scope: '   ' });

  t.equal(response.status, 400);
  t.same(response.body, { error: 'invalid_scope', error_description: 'The scope parameter names no scope' });
});

t.test('unknown resource is invalid_target', async (t) => {
  const { client } = await createTestClient(server);
  const resource = 'https://other.example/api';
  const response = await postForm(endpoint, { client_id: client.id, resource });

  t.equal(response.status, 400);
  t.same(response.body, {
    error: 'invalid_target',
    error_description: `The resource ${resource} is not served by this authorization server`,
  });
});

t.test('trailing-slash API resource is accepted', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(endpoint, { client_id: client.id, resource: `${server.url}/api/v1/` });

  t.equal(response.status, 200);
  const row = await findDeviceCode(server.app.speedgate.db, normalizeUserCode(response.body.user_code) ?? '');
  t.equal(row?.resource, `${server.url}/api/v1`);
});

t.test('failed request stores no device code', async (t) => {
  const { client } = await createTestClient(server, { scopes: ['read:profile'] });
  const { db } = server.app.speedgate;
  const before = await db.selectFrom('device_codes').select(db.fn.countAll<string>().as('count')).executeTakeFirstOrThrow();

  await postForm(endpoint, { client_id: client.id, scope: 'read:teams' });
  await postForm(endpoint, { client_id: client.id, resource: 'https://other.example/' });
  await postForm(endpoint, { client_id: 'no-such-client' });

  const after = await db.selectFrom('device_codes').select(db.fn.countAll<string>().as('count')).executeTakeFirstOrThrow();
  t.equal(Number(after.count), Number(before.count));
});

t.test('confidential client authenticates by Basic', async (t) => {
  const { client, clientSecret } = await createTestClient(server, { confidential: true });
  const authorization = basicAuthorization(client.id, clientSecret ?? '');
  const response = await postForm(endpoint, { scope: 'read:profile' }, { authorization });

  t.equal(response.status, 200);
  t.type(response.body.device_code, 'string');
});

t.test('confidential client authenticates by client_secret_post', async (t) => {
  const { client, clientSecret } = await createTestClient(server, { confidential: true });
  const response = await postForm(endpoint, { client_id: client.id, client_secret: clientSecret ?? '' });

  t.equal(response.status, 200);
  t.type(response.body.device_code, 'string');
});

t.test('wrong secret by Basic gets a challenge', async (t) => {
  const { client } = await createTestClient(server, { confidential: true });
  const response = await postForm(endpoint, {}, { authorization: basicAuthorization(client.id, 'sgs_wrong') });

  t.equal(response.status, 401);
  t.same(response.body, clientFailure);
  t.equal(response.headers.get('www-authenticate'), 'Basic realm="speedgate"');
});

t.test('wrong secret by post is invalid_client', async (t) => {
  const { client } = await createTestClient(server, { confidential: true });
  const response = await postForm(endpoint, { client_id: client.id, client_secret: 'sgs_wrong' });

  t.equal(response.status, 401);
  t.same(response.body, clientFailure);
  t.equal(response.headers.get('www-authenticate'), 'Basic realm="speedgate"');
});

t.test('confidential client without secret fails', async (t) => {
  const { client } = await createTestClient(server, { confidential: true });
  const response = await postForm(endpoint, { client_id: client.id });

  t.equal(response.status, 401);
  t.same(response.body, clientFailure);
});

t.test('public client sending a secret fails', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(endpoint, { client_id: client.id, client_secret: 'anything' });

  t.equal(response.status, 401);
  t.same(response.body, clientFailure);
});

t.test('absent scope means every client scope', async (t) => {
  const { client } = await createTestClient(server, { scopes: ['read:profile', 'read:products'] });
  const start = await startDevice(server, client.id);
  const user = await createTestUser(server);
  await decideDevice(server, start, user.id);

  const issued = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(issued.status, 200);
  t.equal(issued.body.scope, 'read:profile read:products');
});

t.test('response has the RFC 8628 shape', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(endpoint, { client_id: client.id, scope: 'read:profile' });

  t.equal(response.status, 200);
  t.same(Object.keys(response.body).sort(), [
    'device_code',
    'expires_in',
    'interval',
    'user_code',
    'verification_uri',
    'verification_uri_complete',
  ]);
  t.match(response.body.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  t.equal(response.body.expires_in, 900);
  t.equal(response.body.interval, 5);
  t.equal(response.body.verification_uri, `${server.url}/o/device/`);
  t.equal(response.body.verification_uri_complete, `${server.url}/o/device/?user_code=${response.body.user_code}`);
  t.ok(response.body.device_code.length >= 43, 'device_code carries at least 256 bits');
  t.equal(response.headers.get('cache-control'), 'no-store');
  t.match(response.headers.get('content-type'), /^application\/json/);
});

t.test('user codes use only the alphabet', async (t) => {
  const { client } = await createTestClient(server);
  const letters = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const response = await postForm(endpoint, { client_id: client.id });
    for (const letter of response.body.user_code.replace('-', '')) letters.add(letter);
  }

  const outside = [...letters].filter((letter) => !'BCDFGHJKLMNPQRSTVWXZ'.includes(letter));
  t.same(outside, []);
});

t.test('error responses are not cached', async (t) => {
  const response = await postForm(endpoint, { client_id: 'no-such-client' });

  t.equal(response.status, 401);
  t.equal(response.headers.get('cache-control'), 'no-store');
});

t.test('path without trailing slash works', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(`${server.url}/o/device-authorization`, { client_id: client.id });

  t.equal(response.status, 200);
  t.type(response.body.user_code, 'string');
});
