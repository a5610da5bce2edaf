import t from 'tap';
import { startServer, type TestServer } from './helpers/server.ts';
import {
  DEVICE_GRANT,
  callApi,
  createTestClient,
  issueTestTokens,
  postForm,
  type JsonResponse,
} from './helpers/tokens.ts';

let server: TestServer;

t.before(async () => {
  server = await startServer(t);
});

/** Seconds to wait so a rotated token presented again counts as reuse, not a retry of a lost response. */
const PAST_GRACE_PERIOD = 61;

const invalidGrant = { error: 'invalid_grant', error_description: 'The refresh_token is invalid, expired or revoked' };
const revokedAccessToken = { error: 'invalid_token', error_description: 'The access token has been revoked' };

async function refresh(clientId: string, refreshToken: string, extra: Record<string, string> = {}): Promise<JsonResponse> {
  return postForm(`${server.url}/o/token/`, {
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: clientId,
    ...extra,
  });
}

t.test('refresh rotates to a new pair', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile read:teams' });

  const first = await refresh(issued.clientId, issued.refreshToken ?? '');
  t.equal(first.status, 200);
  t.equal(first.headers.get('cache-control'), 'no-store');
  t.equal(first.body.token_type, 'Bearer');
  t.equal(first.body.scope, 'read:profile read:teams');
  t.match(first.body.refresh_token, /^sgr_/);
  t.not(first.body.refresh_token, issued.refreshToken, 'the refresh token changes');
  t.not(first.body.access_token, issued.accessToken, 'the access token changes');

  const second = await refresh(issued.clientId, first.body.refresh_token);
  t.equal(second.status, 200, 'the new refresh token works');
  t.not(second.body.refresh_token, first.body.refresh_token, 'it rotates again');

  const me = await callApi(server, 'GET', '/api/v1/me/', second.body.access_token);
  t.equal(me.status, 200);
  t.equal(me.body.id, issued.user.id);
});

t.test('many tokens refreshed at once', async (t) => {
  const { client } = await createTestClient(server);
  const families = await Promise.all(Array.from({ length: 8 }, () => issueTestTokens(server, { clientId: client.id, scope: 'read:profile' })));
  const [revoked, ...active] = families;
  const revocation = await postForm(`${server.url}/o/revoke_token/`, { token: revoked.refreshToken ?? '', client_id: client.id });
  t.equal(revocation.status, 200);

  // Sent together, these share batched statements: the revoked token must not fail the others.
  const [rejected, ...results] = await Promise.all(families.map((family) => refresh(client.id, family.refreshToken ?? '')));
  t.equal(rejected.status, 400, 'the revoked token is rejected');
  t.same(rejected.body, invalidGrant);
  t.strictSame(results.map((result) => result.status), Array(7).fill(200), 'every other token rotates');

  const successors = await Promise.all(results.map((result) => refresh(client.id, result.body.refresh_token)));
  t.strictSame(successors.map((result) => result.status), Array(7).fill(200), 'each successor was stored');
  const profiles = await Promise.all(successors.map((result) => callApi(server, 'GET', '/api/v1/me/', result.body.access_token)));
  t.strictSame(profiles.map((profile) => profile.body.id), active.map((family) => family.user.id), 'each token is for its own user');
});

t.test('retry inside grace period repeats response', async (t) => {
  const issued = await issueTestTokens(server);

  const first = await refresh(issued.clientId, issued.refreshToken ?? '');
  server.clock.advance(PAST_GRACE_PERIOD - 2);
  const retry = await refresh(issued.clientId, issued.refreshToken ?? '');

  t.equal(retry.status, 200);
  t.same(retry.body, first.body, 'the retry gets the same tokens');

  const next = await refresh(issued.clientId, first.body.refresh_token);
  t.equal(next.status, 200, 'the family stays valid');
});

t.test('rotated token reuse revokes the family', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });
  const first = await refresh(issued.clientId, issued.refreshToken ?? '');
  const second = await refresh(issued.clientId, first.body.refresh_token);
  t.equal(second.status, 200);

  server.clock.advance(PAST_GRACE_PERIOD);
  const reuse = await refresh(issued.clientId, issued.refreshToken ?? '');
  t.equal(reuse.status, 400);
  t.same(reuse.body, invalidGrant);

  const newest = await refresh(issued.clientId, second.body.refresh_token);
  t.equal(newest.status, 400, 'the newest refresh token stops working');
  t.same(newest.body, invalidGrant);

  for (const [label, accessToken] of [
    ['first access token', issued.accessToken],
    ['newest access token', second.body.access_token],
  ]) {
    const me = await callApi(server, 'GET', '/api/v1/me/', accessToken);
    t.equal(me.status, 401, label);
    t.same(me.body, revokedAccessToken, label);
  }
});

t.test('reuse after successor use revokes', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });
  const first = await refresh(issued.clientId, issued.refreshToken ?? '');
  const second = await refresh(issued.clientId, first.body.refresh_token);
  t.equal(second.status, 200);

  // Still inside the grace period, but the successor was already used, so this is not a lost response.
  const reuse = await refresh(issued.clientId, issued.refreshToken ?? '');
  t.equal(reuse.status, 400);
  t.same(reuse.body, invalidGrant);

  const newest = await refresh(issued.clientId, second.body.refresh_token);
  t.same(newest.body, invalidGrant, 'the newest refresh token stops working');
  const me = await callApi(server, 'GET', '/api/v1/me/', second.body.access_token);
  t.equal(me.status, 401);
  t.same(me.body, revokedAccessToken);
});

t.test('concurrent refreshes share one rotation', async (t) => {
  const issued = await issueTestTokens(server);
  const attempts = Array.from({ length: 10 }, () => refresh(issued.clientId, issued.refreshToken ?? ''));
  const responses = await Promise.all(attempts);

  t.same(
    responses.map((response) => response.status),
    Array(10).fill(200),
  );
  const refreshTokens = new Set(responses.map((response) => response.body.refresh_token));
  t.equal(refreshTokens.size, 1, 'every caller gets the same successor');

  const next = await refresh(issued.clientId, responses[0].body.refresh_token);
  t.equal(next.status, 200, 'the family stays valid');
});

t.test('narrower scope is granted', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile read:teams' });

  const narrowed = await refresh(issued.clientId, issued.refreshToken ?? '', { scope: 'read:profile' });
  t.equal(narrowed.status, 200);
  t.equal(narrowed.body.scope, 'read:profile');

  const teams = await callApi(server, 'GET', '/api/v1/teams/', narrowed.body.access_token);
  t.equal(teams.status, 403, 'the narrowed access token lacks read:teams');
  const me = await callApi(server, 'GET', '/api/v1/me/', narrowed.body.access_token);
  t.equal(me.status, 200);

  // RFC 6749 section 6: the new refresh token keeps the scope of the one presented.
  const restored = await refresh(issued.clientId, narrowed.body.refresh_token);
  t.equal(restored.status, 200);
  t.equal(restored.body.scope, 'read:profile read:teams', 'a later refresh gets the full scope back');
});

t.test('wider scope is invalid_scope', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile read:teams' });

  const cases = [
    ['scope outside the grant', 'read:profile write:teams', 'The refresh token was not granted the scope write:teams'],
    ['unknown scope', 'read:profile launch:rockets', 'Unknown scope: launch:rockets'],
    ['reserved scope', 'admin', 'The scope admin cannot be granted to applications'],
    ['only spaces', '   ', 'The scope parameter names no scope'],
  ];
  for (const [label, scope, description] of cases) {
    const response = await refresh(issued.clientId, issued.refreshToken ?? '', { scope });
    t.equal(response.status, 400, label);
    t.same(response.body, { error: 'invalid_scope', error_description: description }, label);
  }

  const after = await refresh(issued.clientId, issued.refreshToken ?? '');
  t.equal(after.status, 200, 'a rejected scope does not use up the refresh token');
  t.equal(after.body.scope, 'read:profile read:teams');
});

t.test('expired refresh token is rejected', async (t) => {
  const issued = await issueTestTokens(server);

  server.clock.advance(30 * 86400);
  const response = await refresh(issued.clientId, issued.refreshToken ?? '');
  t.equal(response.status, 400);
  t.same(response.body, invalidGrant);
});

t.test('refresh token just before expiry works', async (t) => {
  const issued = await issueTestTokens(server);

  server.clock.advance(30 * 86400 - 5);
  const response = await refresh(issued.clientId, issued.refreshToken ?? '');
  t.equal(response.status, 200);
});

t.test('refresh token of another client', async (t) => {
  const issued = await issueTestTokens(server);
  const { client: other } = await createTestClient(server);

  const stolen = await refresh(other.id, issued.refreshToken ?? '');
  t.equal(stolen.status, 400);
  t.same(stolen.body, invalidGrant);

  const rightful = await refresh(issued.clientId, issued.refreshToken ?? '');
  t.equal(rightful.status, 200, 'the owner can still refresh');
});

t.test('unknown refresh token is invalid_grant', async (t) => {
  const { client } = await createTestClient(server);
  const response = await refresh(client.id, 'sgr_not-a-real-token');

  t.equal(response.status, 400);
  t.same(response.body, invalidGrant);
});

t.test('missing refresh_token is invalid_request', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postForm(`${server.url}/o/token/`, { grant_type: 'refresh_token', client_id: client.id });

  t.equal(response.status, 400);
  t.same(response.body, { error: 'invalid_request', error_description: 'Missing required parameter: refresh_token' });
});

t.test('client without refresh grant is unauthorized', async (t) => {
  const { client } = await createTestClient(server, { grantTypes: [DEVICE_GRANT] });
  const response = await refresh(client.id, 'sgr_anything');

  t.equal(response.status, 400);
  t.same(response.body, {
    error: 'unauthorized_client',
    error_description: 'The client is not allowed to use the grant_type refresh_token',
  });
});
