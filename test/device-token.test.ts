import t from 'tap';
import { startServer, type TestServer } from './helpers/server.ts';
import {
  DEVICE_GRANT,
  createTestClient,
  createTestUser,
  decideDevice,
  postForm,
  redeemDevice,
  startDevice,
} from './helpers/tokens.ts';

let server: TestServer;

t.before(async () => {
  server = await startServer(t);
});

const pending = { error: 'authorization_pending', error_description: 'The user has not yet approved the request' };

function slowDown(seconds: number) {
  return { error: 'slow_down', error_description: `Polling too fast; wait at least ${seconds} seconds between requests` };
}

t.test('pending code gets authorization_pending', async (t) => {
  const { client } = await createTestClient(server);
  const start = await startDevice(server, client.id);

  const first = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(first.status, 400);
  t.same(first.body, pending);
  t.equal(first.headers.get('cache-control'), 'no-store');

  server.clock.advance(5);
  const second = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(second.status, 400);
  t.same(second.body, pending);
});

t.test('fast polling grows the interval', async (t) => {
  const { client } = await createTestClient(server);
  const start = await startDevice(server, client.id);

  const first = await redeemDevice(server, client.id, start.deviceCode);
  t.same(first.body, pending);

  const tooSoon = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(tooSoon.status, 400);
  t.same(tooSoon.body, slowDown(10), 'the interval grows from 5 to 10 seconds');

  // Waiting the old interval is still too fast, and grows the interval again.
  server.clock.advance(5);
  const oldInterval = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(oldInterval.status, 400);
  t.same(oldInterval.body, slowDown(15), 'the interval grows from 10 to 15 seconds');

  server.clock.advance(15);
  const newInterval = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(newInterval.status, 400);
  t.same(newInterval.body, pending, 'polling at the new interval is accepted');

  server.clock.advance(10);
  const belowNewInterval = await redeemDevice(server, client.id, start.deviceCode);
  t.same(belowNewInterval.body, slowDown(20), 'the grown interval stays in force');
});

t.test('approved code yields tokens once', async (t) => {
  const { client } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id, { scope: 'read:profile read:teams' });
  await decideDevice(server, start, user.id);

  const issued = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(issued.status, 200);
  t.equal(issued.body.token_type, 'Bearer');
  t.equal(issued.body.scope, 'read:profile read:teams');
  t.equal(issued.body.expires_in, 3600);
  t.match(issued.body.refresh_token, /^sgr_/);
  t.equal(issued.headers.get('cache-control'), 'no-store');

  server.clock.advance(5);
  const replay = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(replay.status, 400);
  t.same(replay.body, { error: 'invalid_grant', error_description: 'The device_code has already been used' });
});

t.test('approval reaches a polling device', async (t) => {
  const { client } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id);

  const first = await redeemDevice(server, client.id, start.deviceCode);
  t.same(first.body, pending);
  server.clock.advance(5);
  const second = await redeemDevice(server, client.id, start.deviceCode);
  t.same(second.body, pending, 'the second poll is answered from memory');

  await decideDevice(server, start, user.id);
  server.clock.advance(5);
  const issued = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(issued.status, 200, 'the poll after the approval gets tokens');
  t.equal(issued.body.token_type, 'Bearer');
});

t.test('denial reaches a polling device', async (t) => {
  const { client } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id);

  const first = await redeemDevice(server, client.id, start.deviceCode);
  t.same(first.body, pending);

  await decideDevice(server, start, user.id, false);
  server.clock.advance(5);
  const denied = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(denied.status, 400);
  t.same(denied.body, { error: 'access_denied', error_description: 'The user denied the authorization request' });
});

t.test('client without refresh grant gets none', async (t) => {
  const { client } = await createTestClient(server, { grantTypes: [DEVICE_GRANT] });
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id);
  await decideDevice(server, start, user.id);

  const issued = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(issued.status, 200);
  t.type(issued.body.access_token, 'string');
  t.equal(issued.body.refresh_token, undefined);
});

t.test('denied code gets access_denied', async (t) => {
  const { client } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id);
  await decideDevice(server, start, user.id, false);

  const response = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(response.status, 400);
  t.same(response.body, { error: 'access_denied', error_description: 'The user denied the authorization request' });
});

t.test('code expires after 900 seconds', async (t) => {
  const { client } = await createTestClient(server);
  const start = await startDevice(server, client.id);

  server.clock.advance(899);
  const before = await redeemDevice(server, client.id, start.deviceCode);
  t.same(before.body, pending, 'still pending one second before expiry');

  server.clock.advance(1);
  const after = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(after.status, 400);
  t.same(after.body, {
    error: 'expired_token',
    error_description: 'The device_code has expired; start a new device authorization',
  });
});

t.test('approved code expires unredeemed', async (t) => {
  const { client } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id);
  await decideDevice(server, start, user.id);

  server.clock.advance(901);
  const response = await redeemDevice(server, client.id, start.deviceCode);
  t.equal(response.status, 400);
  t.equal(response.body.error, 'expired_token');
});

t.test('unknown device code is invalid_grant', async (t) => {
  const { client } = await createTestClient(server);
  const response = await redeemDevice(server, client.id, 'not-a-device-code');

  t.equal(response.status, 400);
  t.same(response.body, { error: 'invalid_grant', error_description: 'The device_code is invalid' });
});

t.test('device code of another client', async (t) => {
  const { client: owner } = await createTestClient(server);
  const { client: other } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, owner.id);
  await decideDevice(server, start, user.id);

  const stolen = await redeemDevice(server, other.id, start.deviceCode);
  t.equal(stolen.status, 400);
  t.same(stolen.body, { error: 'invalid_grant', error_description: 'The device_code is invalid' });

  const rightful = await redeemDevice(server, owner.id, start.deviceCode);
  t.equal(rightful.status, 200, 'the owner can still redeem the code');
});

t.test('pending code polled by another client', async (t) => {
  const { client: owner } = await createTestClient(server);
  const { client: other } = await createTestClient(server);
  const start = await startDevice(server, owner.id);
  const first = await redeemDevice(server, owner.id, start.deviceCode);
  t.same(first.body, pending, "the owner's poll is remembered");

  server.clock.advance(5);
  const stolen = await redeemDevice(server, other.id, start.deviceCode);
  t.equal(stolen.status, 400);
  t.same(stolen.body, { error: 'invalid_grant', error_description: 'The device_code is invalid' });
});

t.test('missing device_code is invalid_request', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(`${server.url}/o/token/`, { grant_type: DEVICE_GRANT, client_id: client.id });

  t.equal(response.status, 400);
  t.same(response.body, { error: 'invalid_request', error_description: 'Missing required parameter: device_code' });
});

t.test('client without device grant is unauthorized', async (t) => {
  const { client } = await createTestClient(server, { grantTypes: ['refresh_token'] });
  const response = await redeemDevice(server, client.id, 'whatever');

  t.equal(response.status, 400);
  t.same(response.body, {
    error: 'unauthorized_client',
    error_description: `The client is not allowed to use the grant_type ${DEVICE_GRANT}`,
  });
});

t.test('concurrent redemptions succeed exactly once', async (t) => {
  const { client } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id);
  await decideDevice(server, start, user.id);

  const attempts = Array.from({ length: 50 }, () => redeemDevice(server, client.id, start.deviceCode));
  const responses = await Promise.all(attempts);

  const successes = responses.filter((response) => response.status === 200);
  const failures = responses.filter((response) => response.status !== 200);
  t.equal(successes.length, 1, 'one redemption succeeds');
  t.equal(failures.length, 49);
  for (const failure of failures) {
    t.same(failure.body, { error: 'invalid_grant', error_description: 'The device_code has already been used' });
  }

  const { db } = server.app.speedgate;
  const grants = await db.selectFrom('grants').select('id').where('client_id', '=', client.id).execute();
  t.equal(grants.length, 1, 'one authorization is stored');
  const refreshTokens = await db
    .selectFrom('refresh_tokens')
    .select('id')
    .where('grant_id', '=', grants[0].id)
    .execute();
  t.equal(refreshTokens.length, 1, 'one refresh token is stored');
});
