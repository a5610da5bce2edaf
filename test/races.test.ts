import t from 'tap';
import { sha256Hex } from '../src/oauth/secrets.ts';
import {
  createSignedInUser,
  obtainCode,
  obtainTokens,
  profileStatus,
  redeemCode,
  refresh,
  registerCodeClient,
  type HttpResult,
} from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';
import { createTestClient, createTestUser, decideDevice, redeemDevice, startDevice } from './helpers/tokens.ts';

// On PGlite the driver runs one query at a time, so these requests take turns
// anyway. On PostgreSQL (DATABASE_URL set) they reach the database at once over
// a pool of connections, and only the row locks keep them apart.
const CONCURRENCY = 50;

const server = await startServer(t);
const { db } = server.app.speedgate;

/** Returns the distinct bodies of the responses that were not a 200, parsed back from JSON. */
function rejectionBodies(results: HttpResult[]): unknown[] {
  const distinct = new Set(results.filter((result) => result.status !== 200).map((result) => JSON.stringify(result.body)));
  return [...distinct].map((text) => JSON.parse(text));
}

function countStatuses(results: HttpResult[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const result of results) counts[result.status] = (counts[result.status] ?? 0) + 1;
  return counts;
}

t.test('concurrent code redemptions issue once', async (t) => {
  const { client } = await registerCodeClient(server);
  const { browser } = await createSignedInUser(server);
  const issued = await obtainCode(browser, client.id);

  const results = await Promise.all(Array.from({ length: CONCURRENCY }, () => redeemCode(server, client.id, issued)));
  t.strictSame(countStatuses(results), { 200: 1, 400: CONCURRENCY - 1 }, 'exactly one redemption succeeds');

  const winner = results.find((result) => result.status === 200);
  t.equal(winner?.body.token_type, 'Bearer');
  t.strictSame(rejectionBodies(results), [{ error: 'invalid_grant', error_description: 'The authorization code has already been used' }]);

  const grants = await db.selectFrom('grants').select(['id', 'revoked_at']).where('client_id', '=', client.id).execute();
  t.equal(grants.length, 1, 'one grant was created');
  t.not(grants[0].revoked_at, null, 'the replays revoked the grant, as a second use of a code must');
  t.equal(await profileStatus(server, winner?.body.access_token), 401, "the winner's access token stops working");
});

t.test('concurrent device polls issue once', async (t) => {
  const { client } = await createTestClient(server);
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id);
  await decideDevice(server, start, user.id);

  const results = await Promise.all(Array.from({ length: CONCURRENCY }, () => redeemDevice(server, client.id, start.deviceCode)));
  t.strictSame(countStatuses(results), { 200: 1, 400: CONCURRENCY - 1 }, 'exactly one poll gets tokens');
  t.strictSame(rejectionBodies(results), [{ error: 'invalid_grant', error_description: 'The device_code has already been used' }]);

  const grants = await db.selectFrom('grants').select('id').where('client_id', '=', client.id).execute();
  t.equal(grants.length, 1, 'one grant was created');
  const live = await db.selectFrom('refresh_tokens').select('id').where('grant_id', '=', grants[0].id).execute();
  t.equal(live.length, 1, 'one refresh token was issued');
  const device = await db.selectFrom('device_codes').select('status').where('id', '=', start.rowId).executeTakeFirstOrThrow();
  t.equal(device.status, 'consumed');

  const winner = results.find((result) => result.status === 200);
  t.equal(await profileStatus(server, winner?.body.access_token), 200, "the winner's access token works");
});

t.test('concurrent refreshes share one rotation', async (t) => {
  const { client } = await registerCodeClient(server);
  const tokens = await obtainTokens(server, client.id);

  const results = await Promise.all(Array.from({ length: CONCURRENCY }, () => refresh(server, client.id, tokens.refreshToken)));
  t.strictSame(countStatuses(results), { 200: CONCURRENCY }, 'every retry inside the grace window succeeds');
  const distinct = new Set(results.map((result) => JSON.stringify(result.body)));
  t.equal(distinct.size, 1, 'all responses carry the same token pair');

  const pair = results[0].body;
  t.not(pair.refresh_token, tokens.refreshToken, 'the refresh token rotated');
  t.equal(await profileStatus(server, pair.access_token), 200, 'no retry was taken for reuse');

  const grant = await db
    .selectFrom('refresh_tokens')
    .select('grant_id')
    .where('token_hash', '=', sha256Hex(tokens.refreshToken))
    .executeTakeFirstOrThrow();
  const rows = await db.selectFrom('refresh_tokens').selectAll().where('grant_id', '=', grant.grant_id).execute();
  t.equal(rows.length, 2, 'the old token and exactly one successor');
  const live = rows.filter((row) => row.rotated_at === null && row.revoked_at === null);
  t.equal(live.length, 1, 'one live refresh token for the grant');
  t.equal(live[0]?.token_hash, sha256Hex(pair.refresh_token), 'the live one is the token every response carried');

  const next = await refresh(server, client.id, pair.refresh_token);
  t.equal(next.status, 200, 'the chain continues from the shared successor');
});
