import t, { type Test } from 'tap';
import { decodeJwt, obtainTokens, postForm, profileStatus, refresh, registerCodeClient, type HttpResult } from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';

const server = await startServer(t);
const { client } = await registerCodeClient(server);

const INVALID_GRANT = { error: 'invalid_grant', error_description: 'The refresh_token is invalid, expired or revoked' };

function expectInvalidGrant(t: Test, result: HttpResult): void {
  t.equal(result.status, 400);
  t.strictSame(result.body, INVALID_GRANT);
}

t.test('concurrent refreshes get one response', async (t) => {
  const tokens = await obtainTokens(server, client.id);

  const [first, second] = await Promise.all([refresh(server, client.id, tokens.refreshToken), refresh(server, client.id, tokens.refreshToken)]);
  t.equal(first.status, 200);
  t.equal(second.status, 200);
  t.strictSame(second.body, first.body, 'the same tokens');
  t.not(first.body.refresh_token, tokens.refreshToken, 'the token rotated');
  t.equal(await profileStatus(server, first.body.access_token), 200);

  const next = await refresh(server, client.id, first.body.refresh_token);
  t.equal(next.status, 200, 'the shared successor works');
});

t.test('ten concurrent refreshes agree', async (t) => {
  const tokens = await obtainTokens(server, client.id);

  const results = await Promise.all(Array.from({ length: 10 }, () => refresh(server, client.id, tokens.refreshToken)));
  t.strictSame(
    results.map((result) => result.status),
    Array(10).fill(200),
  );
  for (const result of results.slice(1)) t.strictSame(result.body, results[0].body);
  t.equal(await profileStatus(server, results[0].body.access_token), 200, 'no retry counted as reuse');
});

t.test('retry inside the grace window', async (t) => {
  const tokens = await obtainTokens(server, client.id);
  const first = await refresh(server, client.id, tokens.refreshToken);
  t.equal(first.status, 200);

  server.clock.advance(30);
  const retry = await refresh(server, client.id, tokens.refreshToken);
  t.equal(retry.status, 200);
  t.strictSame(retry.body, first.body, 'the same tokens as the first refresh');
  t.equal(retry.headers.get('cache-control'), 'no-store');
  t.equal(await profileStatus(server, first.body.access_token), 200, 'the family is intact');
});

t.test('retry after the window revokes the family', async (t) => {
  const tokens = await obtainTokens(server, client.id);
  const first = await refresh(server, client.id, tokens.refreshToken);
  t.equal(first.status, 200);

  server.clock.advance(61);
  expectInvalidGrant(t, await refresh(server, client.id, tokens.refreshToken));
  t.equal(await profileStatus(server, first.body.access_token), 401, 'the newest access token stops working');
  t.equal(await profileStatus(server, tokens.accessToken), 401, 'the first access token stops working');
  expectInvalidGrant(t, await refresh(server, client.id, first.body.refresh_token));
});

t.test('retry after the successor was used', async (t) => {
  const tokens = await obtainTokens(server, client.id);
  const first = await refresh(server, client.id, tokens.refreshToken);
  const second = await refresh(server, client.id, first.body.refresh_token);
  t.equal(second.status, 200);

  expectInvalidGrant(t, await refresh(server, client.id, tokens.refreshToken));
  t.equal(await profileStatus(server, second.body.access_token), 401, 'the newest access token stops working');
  expectInvalidGrant(t, await refresh(server, client.id, second.body.refresh_token));
});

t.test('retry by another client is rejected', async (t) => {
  const tokens = await obtainTokens(server, client.id);
  const first = await refresh(server, client.id, tokens.refreshToken);
  const { client: other } = await registerCodeClient(server);

  expectInvalidGrant(t, await refresh(server, other.id, tokens.refreshToken));
  t.equal(await profileStatus(server, first.body.access_token), 200, "another client's attempt leaves the family alone");
});

t.test('wider scope on refresh is invalid_scope', async (t) => {
  const tokens = await obtainTokens(server, client.id, 'read:profile');

  const wider = await refresh(server, client.id, tokens.refreshToken, { scope: 'read:profile read:teams' });
  t.equal(wider.status, 400);
  t.strictSame(wider.body, { error: 'invalid_scope', error_description: 'The refresh token was not granted the scope read:teams' });

  const unknown = await refresh(server, client.id, tokens.refreshToken, { scope: 'read:everything' });
  t.equal(unknown.status, 400);
  t.strictSame(unknown.body, { error: 'invalid_scope', error_description: 'Unknown scope: read:everything' });

  const unchanged = await refresh(server, client.id, tokens.refreshToken);
  t.equal(unchanged.status, 200, 'the rejected requests did not spend the token');
  t.equal(unchanged.body.scope, 'read:profile');
});

t.test('narrower scope on refresh works', async (t) => {
  const tokens = await obtainTokens(server, client.id, 'read:profile read:teams');

  const narrowed = await refresh(server, client.id, tokens.refreshToken, { scope: 'read:profile' });
  t.equal(narrowed.status, 200);
  t.equal(narrowed.body.scope, 'read:profile');
  t.equal(decodeJwt(narrowed.body.access_token).payload.scope, 'read:profile');
  const teams = await fetch(`${server.url}/api/v1/teams/`, { headers: { authorization: `Bearer ${narrowed.body.access_token}` } });
  t.equal(teams.status, 403, 'the narrowed access token lacks read:teams');
  await teams.arrayBuffer();

  // RFC 6749 section 6: the new refresh token has the scope of the one presented.
  const restored = await refresh(server, client.id, narrowed.body.refresh_token);
  t.equal(restored.status, 200);
  t.equal(restored.body.scope, 'read:profile read:teams', 'the next refresh without scope gets the full grant');
});

t.test('refresh of an unknown token fails', async (t) => {
  expectInvalidGrant(t, await refresh(server, client.id, 'sgr_not-a-token'));

  const missing = await postForm(`${server.url}/o/token/`, { grant_type: 'refresh_token', client_id: client.id });
  t.equal(missing.status, 400);
  t.strictSame(missing.body, { error: 'invalid_request', error_description: 'Missing required parameter: refresh_token' });
});
