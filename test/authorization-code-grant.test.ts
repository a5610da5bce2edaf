import t, { type Test } from 'tap';
import { apiResource } from '../src/oauth/context.ts';
import { authorizationCodeGrant } from '../src/oauth/grants/authorization-code.ts';
import { sha256Hex } from '../src/oauth/secrets.ts';
import {
  REDIRECT_URI,
  basicAuthorization,
  createSignedInUser,
  decodeJwt,
  obtainCode,
  postForm,
  profileStatus,
  redeemCode,
  refresh,
  registerCodeClient,
  type HttpResult,
  type IssuedCode,
} from './helpers/authorization.ts';
import { startServer } from './helpers/server.ts';

const server = await startServer(t);
const tokenUrl = `${server.url}/o/token/`;

function expectError(t: Test, result: HttpResult, status: number, error: string, description: string): void {
  t.equal(result.status, status, 'status');
  t.strictSame(result.body, { error, error_description: description }, 'error body');
  t.equal(result.headers.get('cache-control'), 'no-store');
}

/** RFC 6749 section 5.2 with RFC 9110 section 15.5.2: a 401 names the scheme to authenticate with. */
function expectInvalidClient(t: Test, result: HttpResult): void {
  expectError(t, result, 401, 'invalid_client', 'Client authentication failed');
  t.equal(result.headers.get('www-authenticate'), 'Basic realm="speedgate"', 'Basic challenge');
}

/** Registers a public client and obtains a code for it as a new user. */
async function publicCode(scope = 'read:profile read:teams') {
  const { client } = await registerCodeClient(server);
  const { user, browser } = await createSignedInUser(server);
  const issued = await obtainCode(browser, client.id, { scope });
  return { client, user, issued };
}

function codeFields(issued: IssuedCode): Record<string, string> {
  return {
    grant_type: 'authorization_code',
    code: issued.code,
    code_verifier: issued.pkce.verifier,
    redirect_uri: issued.redirectUri,
  };
}

t.test('valid code returns tokens', async (t) => {
  const { client, user, issued } = await publicCode();

  const redeemed = await redeemCode(server, client.id, issued);
  t.equal(redeemed.status, 200);
  t.equal(redeemed.headers.get('cache-control'), 'no-store');
  t.equal(redeemed.headers.get('pragma'), 'no-cache');
  t.strictSame(Object.keys(redeemed.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type']);
  t.equal(redeemed.body.token_type, 'Bearer');
  t.equal(redeemed.body.expires_in, 3600);
  t.equal(redeemed.body.scope, 'read:profile read:teams');
  t.match(redeemed.body.refresh_token, /^sgr_/);

  const { header, payload } = decodeJwt(redeemed.body.access_token);
  t.equal(header.typ, 'at+jwt');
  t.equal(payload.iss, server.url);
  t.equal(payload.sub, user.id);
  t.equal(payload.aud, apiResource(server.config));
  t.equal(payload.client_id, client.id);
  t.equal(payload.scope, 'read:profile read:teams');
  t.equal(payload.exp - payload.iat, 3600);
  t.equal(await profileStatus(server, redeemed.body.access_token), 200);
});

t.test('wrong code_verifier is invalid_grant', async (t) => {
  const { client, issued } = await publicCode();
  const wrong = { ...issued, pkce: { ...issued.pkce, verifier: 'A'.repeat(43) } };

  expectError(t, await redeemCode(server, client.id, wrong), 400, 'invalid_grant', 'The code_verifier does not match the code_challenge');

  const malformed = { ...issued, pkce: { ...issued.pkce, verifier: 'short' } };
  expectError(t, await redeemCode(server, client.id, malformed), 400, 'invalid_grant', 'The code_verifier does not match the code_challenge');

  t.equal((await redeemCode(server, client.id, issued)).status, 200, 'the failed attempts left the code usable');
});

t.test('resource on code redemption', async (t) => {
  const { client, issued } = await publicCode();
  const redeemWith = (resource: string) => postForm(tokenUrl, { ...codeFields(issued), client_id: client.id, resource });

  const unknown = await redeemWith('https://elsewhere.example/api');
  expectError(t, unknown, 400, 'invalid_target', 'The resource https://elsewhere.example/api is not served by this authorization server');

  const bound = await redeemWith(apiResource(server.config));
  t.equal(bound.status, 200, 'the bound resource redeems the code after the failed attempt');
  t.equal(decodeJwt(bound.body.access_token).payload.aud, apiResource(server.config));
});

t.test('missing code_verifier is invalid_request', async (t) => {
  const { client, issued } = await publicCode();
  const { code_verifier: _omitted, ...fields } = codeFields(issued);

  const result = await postForm(tokenUrl, { ...fields, client_id: client.id });
  expectError(t, result, 400, 'invalid_request', 'Missing required parameter: code_verifier');

  const withoutCode = await postForm(tokenUrl, { grant_type: 'authorization_code', client_id: client.id });
  expectError(t, withoutCode, 400, 'invalid_request', 'Missing required parameter: code');
});

t.test('reused code revokes the first tokens', async (t) => {
  const { client, issued } = await publicCode();
  const first = await redeemCode(server, client.id, issued);
  t.equal(first.status, 200);
  t.equal(await profileStatus(server, first.body.access_token), 200, 'the first tokens work before the replay');

  const replay = await redeemCode(server, client.id, issued);
  expectError(t, replay, 400, 'invalid_grant', 'The authorization code has already been used');

  t.equal(await profileStatus(server, first.body.access_token), 401, 'the access token stops working');
  const refreshed = await refresh(server, client.id, first.body.refresh_token);
  expectError(t, refreshed, 400, 'invalid_grant', 'The refresh_token is invalid, expired or revoked');
});

t.test("another client's code is invalid_grant", async (t) => {
  const { issued } = await publicCode();
  const { client: other } = await registerCodeClient(server);

  const result = await redeemCode(server, other.id, issued);
  expectError(t, result, 400, 'invalid_grant', 'The authorization code was issued to another client');
});

t.test('expired code is invalid_grant', async (t) => {
  const { client, issued } = await publicCode();
  server.clock.advance(61);

  expectError(t, await redeemCode(server, client.id, issued), 400, 'invalid_grant', 'The authorization code has expired');
});

t.test('code inside its 60 seconds works', async (t) => {
  const { client, issued } = await publicCode();
  server.clock.advance(59);

  t.equal((await redeemCode(server, client.id, issued)).status, 200);
});

t.test('redirect_uri mismatch is invalid_grant', async (t) => {
  const { client, issued } = await publicCode();

  const other = await redeemCode(server, client.id, { ...issued, redirectUri: 'https://client.example/other' });
  expectError(t, other, 400, 'invalid_grant', 'The redirect_uri does not match the authorization request');

  const { redirect_uri: _omitted, ...fields } = codeFields(issued);
  const missing = await postForm(tokenUrl, { ...fields, client_id: client.id });
  expectError(t, missing, 400, 'invalid_request', 'Missing required parameter: redirect_uri');

  t.equal((await redeemCode(server, client.id, issued)).status, 200, 'the failed attempts left the code usable');
});

t.test('many codes redeemed at once', async (t) => {
  const { client } = await registerCodeClient(server);
  const users = await Promise.all(Array.from({ length: 9 }, () => createSignedInUser(server)));
  const [wrongUser, ...rightUsers] = users;
  const codes = await Promise.all(rightUsers.map(({ browser }) => obtainCode(browser, client.id, { scope: 'read:profile' })));
  const wrongCode = await obtainCode(wrongUser.browser, client.id, { scope: 'read:profile' });
  const wrong = { ...wrongCode, pkce: { ...wrongCode.pkce, verifier: 'B'.repeat(43) } };

  // Sent together, these share batched statements: one bad request must not fail the others.
  const [rejected, ...results] = await Promise.all([wrong, ...codes].map((issued) => redeemCode(server, client.id, issued)));
  t.equal(rejected.status, 400, 'the wrong verifier is rejected');
  t.strictSame(results.map((result) => result.status), Array(8).fill(200), 'every other code is redeemed');

  const subjects = results.map((result) => decodeJwt(result.body.access_token).payload.sub);
  t.strictSame(subjects, rightUsers.map(({ user }) => user.id), 'each token is for the user who approved its code');
  const refreshed = await Promise.all(results.map((result) => refresh(server, client.id, result.body.refresh_token)));
  t.strictSame(refreshed.map((result) => result.status), Array(8).fill(200), 'each refresh token was stored');
});

t.test('failed checks in a batch get nothing', async (t) => {
  const { client: other } = await registerCodeClient(server);
  const { client, issued } = await publicCode('read:profile');
  const { issued: first } = await publicCode('read:profile');
  const fields = codeFields(issued);
  const context = server.app.speedgate;

  // Handled in one tick, the first redemption runs alone and the rest share the next
  // statement in this order, so two failing requests for the code come before the rightful one.
  const outcomes = await Promise.allSettled([
    authorizationCodeGrant.handle(context, client, codeFields(first)),
    authorizationCodeGrant.handle(context, client, { ...fields, code_verifier: 'C'.repeat(43) }),
    authorizationCodeGrant.handle(context, other, fields),
    authorizationCodeGrant.handle(context, client, fields),
  ]);

  t.equal(outcomes[1].status, 'rejected', 'the wrong verifier gets no tokens');
  t.equal(outcomes[2].status, 'rejected', 'another client gets no tokens');
  const rightful = outcomes[3];
  t.equal(rightful.status, 'fulfilled', 'the rightful request gets the tokens');
  if (rightful.status !== 'fulfilled') return;

  // The failing requests end in the transaction, where the spent code revokes this grant,
  // so the check is that what the rightful request got was stored for it.
  const grantId = decodeJwt(rightful.value.access_token).payload.grant_id;
  const grant = await context.db.selectFrom('grants').selectAll().where('id', '=', grantId).executeTakeFirst();
  t.equal(grant?.client_id, client.id, "the token's grant was stored for the rightful client");
  const stored = await context.db
    .selectFrom('refresh_tokens')
    .select('grant_id')
    .where('token_hash', '=', sha256Hex(rightful.value.refresh_token ?? ''))
    .executeTakeFirst();
  t.equal(stored?.grant_id, grantId, 'its refresh token was stored with that grant');
});

t.test('concurrent redemptions yield one success', async (t) => {
  const { client, issued } = await publicCode();

  const results = await Promise.all(Array.from({ length: 50 }, () => redeemCode(server, client.id, issued)));
  const successes = results.filter((result) => result.status === 200);
  const failures = results.filter((result) => result.status !== 200);
  t.equal(successes.length, 1, 'exactly one 200');
  t.equal(failures.length, 49);
  for (const failure of failures) {
    t.strictSame(failure.body, { error: 'invalid_grant', error_description: 'The authorization code has already been used' });
  }

  const grants = await server.app.speedgate.db
    .selectFrom('grants')
    .select(['id', 'revoked_at'])
    .where('client_id', '=', client.id)
    .execute();
  t.equal(grants.length, 1, 'one authorization was created');
  t.not(grants[0].revoked_at, null, 'the replays revoked it');
});

t.test('confidential client authentication', async (t) => {
  const { client, clientSecret } = await registerCodeClient(server, { confidential: true });
  const secret = clientSecret!;
  const { browser } = await createSignedInUser(server);

  await t.test('wrong secret with Basic is 401', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await redeemCode(server, client.id, issued, `${secret}x`);
    expectInvalidClient(t, result);
    t.equal((await redeemCode(server, client.id, issued, secret)).status, 200, 'the code was not spent');
  });

  await t.test('wrong secret with post is 401', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await postForm(tokenUrl, { ...codeFields(issued), client_id: client.id, client_secret: `${secret}x` });
    expectInvalidClient(t, result);
  });

  await t.test('missing secret is 401', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await postForm(tokenUrl, { ...codeFields(issued), client_id: client.id });
    expectInvalidClient(t, result);
  });

  await t.test('unknown client is 401', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await redeemCode(server, 'no-such-client', issued, secret);
    expectInvalidClient(t, result);
  });

  await t.test('client_secret_post works', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await postForm(tokenUrl, { ...codeFields(issued), client_id: client.id, client_secret: secret });
    t.equal(result.status, 200);
    t.equal(result.body.token_type, 'Bearer');
  });

  await t.test('client_secret_basic works', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await redeemCode(server, client.id, issued, secret);
    t.equal(result.status, 200);
    t.equal(result.body.token_type, 'Bearer');
  });

  await t.test('Basic and post together are rejected', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await postForm(
      tokenUrl,
      { ...codeFields(issued), client_secret: secret },
      { authorization: basicAuthorization(client.id, secret) },
    );
    expectError(t, result, 400, 'invalid_request', 'Use one client authentication method, not both Basic and client_secret');
  });
});

t.test('Basic credentials are form-urlencoded first', async (t) => {
  const { client } = await registerCodeClient(server, { confidential: true });
  const secret = 'a+b/c:d%e f&g=';
  // Set before the server first reads the client, so no cached row keeps the generated secret.
  await server.app.speedgate.db.updateTable('clients').set({ secret_hash: sha256Hex(secret) }).where('id', '=', client.id).execute();
  const { browser } = await createSignedInUser(server);

  await t.test('encoded secret works', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const authorization = basicAuthorization(client.id, secret);
    t.equal(authorization, `Basic ${Buffer.from(`${client.id}:a%2Bb%2Fc%3Ad%25e+f%26g%3D`).toString('base64')}`);

    const result = await postForm(tokenUrl, codeFields(issued), { authorization });
    t.equal(result.status, 200);
  });

  await t.test('un-encoded plus is a space', async (t) => {
    const issued = await obtainCode(browser, client.id);
    // Every character encoded except `+`, which form decoding turns into a space.
    const raw = `${client.id}:a+b%2Fc%3Ad%25e+f%26g%3D`;
    const result = await postForm(tokenUrl, codeFields(issued), { authorization: `Basic ${Buffer.from(raw).toString('base64')}` });
    expectInvalidClient(t, result);
  });

  await t.test('un-encoded percent is invalid_request', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const raw = `${client.id}:${secret}`;
    const result = await postForm(tokenUrl, codeFields(issued), { authorization: `Basic ${Buffer.from(raw).toString('base64')}` });
    expectError(t, result, 400, 'invalid_request', 'The Authorization header has invalid percent-encoding');
  });

  await t.test('client_secret_post sends it as a form field', async (t) => {
    const issued = await obtainCode(browser, client.id);
    const result = await postForm(tokenUrl, { ...codeFields(issued), client_id: client.id, client_secret: secret });
    t.equal(result.status, 200);
  });
});

t.test('code for the redirect it was issued to', async (t) => {
  const { client } = await registerCodeClient(server, { redirectUris: [REDIRECT_URI, 'http://127.0.0.1/cb'] });
  const { browser } = await createSignedInUser(server);
  const issued = await obtainCode(browser, client.id, { redirect_uri: 'http://127.0.0.1:50000/cb' });

  const registered = await redeemCode(server, client.id, { ...issued, redirectUri: 'http://127.0.0.1/cb' });
  expectError(t, registered, 400, 'invalid_grant', 'The redirect_uri does not match the authorization request');
  t.equal((await redeemCode(server, client.id, issued)).status, 200, 'the exact redirect_uri with its port works');
});
