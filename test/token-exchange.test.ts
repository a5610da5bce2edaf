import t, { type Test } from 'tap';
import { registerClient, type ClientRegistration } from '../src/oauth/clients.ts';
import {
  basicAuthorization,
  createSignedInUser,
  decodeJwt,
  obtainCode,
  postForm,
  profileStatus,
  redeemCode,
  registerCodeClient,
  type HttpResult,
} from './helpers/authorization.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// The MCP server's URL only names a resource here; nothing listens on it.
const MCP_RESOURCE = 'http://127.0.0.1:8787/mcp';
const EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

interface ExchangeClient {
  id: string;
  secret: string;
}

interface Fixture {
  server: TestServer;
  mcp: ExchangeClient;
  /** A public authorization code client, such as an MCP client, that obtains the subject tokens. */
  connectorId: string;
}

async function registerExchangeClient(
  server: TestServer,
  registration: Partial<ClientRegistration> = {},
): Promise<ExchangeClient> {
  const { db, scopes } = server.app.speedgate;
  const { client, clientSecret } = await registerClient(
    db,
    scopes,
    {
      name: 'MCP server',
      registrationType: 'operator',
      confidential: true,
      grantTypes: [EXCHANGE_GRANT],
      metadata: { resource: MCP_RESOURCE },
      ...registration,
    },
    server.clock.now(),
  );
  return { id: client.id, secret: clientSecret ?? '' };
}

async function setUp(t: Test): Promise<Fixture> {
  const server = await startServer(t, { env: { RESOURCES: MCP_RESOURCE } });
  const mcp = await registerExchangeClient(server);
  const { client } = await registerCodeClient(server);
  return { server, mcp, connectorId: client.id };
}

// One server for the whole file: each test signs in a new user, so tests share no authorization.
const fixture = await setUp(t);

/** Signs a new user in and returns the code flow's tokens for `resource` (the MCP server unless given). */
async function obtainSubjectTokens(fixture: Fixture, scope = 'read:profile read:teams', resource = MCP_RESOURCE) {
  const { user, browser } = await createSignedInUser(fixture.server);
  const issued = await obtainCode(browser, fixture.connectorId, { scope, resource });
  const redeemed = await redeemCode(fixture.server, fixture.connectorId, issued);
  if (redeemed.status !== 200) {
    throw new Error(`code redemption failed: ${redeemed.status} ${JSON.stringify(redeemed.body)}`);
  }
  return {
    user,
    accessToken: redeemed.body.access_token as string,
    refreshToken: redeemed.body.refresh_token as string,
  };
}

async function exchange(
  fixture: Fixture,
  client: ExchangeClient,
  fields: Record<string, string>,
): Promise<HttpResult> {
  return postForm(
    `${fixture.server.url}/o/token/`,
    {
      grant_type: EXCHANGE_GRANT,
      subject_token_type: ACCESS_TOKEN_TYPE,
      resource: `${fixture.server.url}/api/v1`,
      ...fields,
    },
    { authorization: basicAuthorization(client.id, client.secret) },
  );
}

t.test('exchange issues an API token', async (t) => {
  const subject = await obtainSubjectTokens(fixture);

  const exchanged = await exchange(fixture, fixture.mcp, { subject_token: subject.accessToken });
  t.equal(exchanged.status, 200);
  t.equal(exchanged.headers.get('cache-control'), 'no-store');
  t.equal(exchanged.body.issued_token_type, ACCESS_TOKEN_TYPE);
  t.equal(exchanged.body.token_type, 'Bearer');
  t.equal(exchanged.body.scope, 'read:profile read:teams');
  t.ok(exchanged.body.expires_in > 0 && exchanged.body.expires_in <= decodeJwt(subject.accessToken).payload.exp);
  t.equal(exchanged.body.refresh_token, undefined, 'an exchange issues no refresh token');

  const claims = decodeJwt(exchanged.body.access_token).payload;
  t.equal(claims.aud, `${fixture.server.url}/api/v1`);
  t.equal(claims.sub, subject.user.id);
  t.equal(claims.client_id, fixture.connectorId);
  t.same(claims.act, { sub: fixture.mcp.id });
  t.ok(claims.exp <= decodeJwt(subject.accessToken).payload.exp, 'the new token never outlives the subject token');

  t.equal(await profileStatus(fixture.server, exchanged.body.access_token), 200);
  const ownToken = await profileStatus(fixture.server, subject.accessToken);
  t.equal(ownToken, 401, "the API rejects the MCP server's own token");
});

t.test('exchange narrows the scope on request', async (t) => {
  const subject = await obtainSubjectTokens(fixture);

  const fields = { subject_token: subject.accessToken, scope: 'read:profile' };
  const exchanged = await exchange(fixture, fixture.mcp, fields);
  t.equal(exchanged.status, 200);
  t.equal(exchanged.body.scope, 'read:profile');
  t.equal(decodeJwt(exchanged.body.access_token).payload.scope, 'read:profile');
});

t.test('exchange rejects a wider scope', async (t) => {
  const subject = await obtainSubjectTokens(fixture, 'read:profile');

  const fields = { subject_token: subject.accessToken, scope: 'read:profile read:teams' };
  const exchanged = await exchange(fixture, fixture.mcp, fields);
  t.equal(exchanged.status, 400);
  t.same(exchanged.body, {
    error: 'invalid_scope',
    error_description: 'The subject_token was not granted the scope read:teams',
  });
});

t.test('exchange rejects another audience', async (t) => {
  const apiTokens = await obtainSubjectTokens(fixture, 'read:profile', `${fixture.server.url}/api/v1`);

  const exchanged = await exchange(fixture, fixture.mcp, { subject_token: apiTokens.accessToken });
  t.equal(exchanged.status, 400);
  t.same(exchanged.body, {
    error: 'invalid_grant',
    error_description: "The subject_token is invalid, expired or was not issued for this client's resource",
  });
});

t.test('exchange rejects a revoked authorization', async (t) => {
  const subject = await obtainSubjectTokens(fixture);
  const before = await exchange(fixture, fixture.mcp, { subject_token: subject.accessToken });
  t.equal(before.status, 200);

  const revoked = await postForm(`${fixture.server.url}/o/revoke_token/`, {
    token: subject.refreshToken,
    client_id: fixture.connectorId,
  });
  t.equal(revoked.status, 200);

  const after = await exchange(fixture, fixture.mcp, { subject_token: subject.accessToken });
  t.equal(after.status, 400);
  t.same(after.body, { error: 'invalid_grant', error_description: 'The subject_token has been revoked' });
  const exchangedStatus = await profileStatus(fixture.server, before.body.access_token);
  t.equal(exchangedStatus, 401, 'the exchanged token stops working too');
});

t.test('exchange rejects a public client', async (t) => {
  const subject = await obtainSubjectTokens(fixture);
  const publicClient = await registerExchangeClient(fixture.server, { confidential: false });

  const exchanged = await postForm(`${fixture.server.url}/o/token/`, {
    grant_type: EXCHANGE_GRANT,
    subject_token: subject.accessToken,
    subject_token_type: ACCESS_TOKEN_TYPE,
    client_id: publicClient.id,
  });
  t.equal(exchanged.status, 400);
  t.same(exchanged.body, {
    error: 'unauthorized_client',
    error_description: 'Only a confidential client that operates a registered resource may exchange tokens',
  });
});

t.test('exchange requires a registered resource', async (t) => {
  const subject = await obtainSubjectTokens(fixture);
  const withoutResource = await registerExchangeClient(fixture.server, { metadata: {} });

  const exchanged = await exchange(fixture, withoutResource, { subject_token: subject.accessToken });
  t.equal(exchanged.status, 400);
  t.same(exchanged.body, {
    error: 'unauthorized_client',
    error_description: 'Only a confidential client that operates a registered resource may exchange tokens',
  });
});

t.test('exchange requires the grant type', async (t) => {
  const subject = await obtainSubjectTokens(fixture);
  const other = await registerExchangeClient(fixture.server, { grantTypes: ['client_credentials'] });

  const exchanged = await exchange(fixture, other, { subject_token: subject.accessToken });
  t.equal(exchanged.status, 400);
  t.same(exchanged.body, {
    error: 'unauthorized_client',
    error_description: `The client is not allowed to use the grant_type ${EXCHANGE_GRANT}`,
  });
});

t.test('exchange rejects a wrong subject_token_type', async (t) => {
  const subject = await obtainSubjectTokens(fixture);

  const exchanged = await exchange(fixture, fixture.mcp, {
    subject_token: subject.refreshToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:refresh_token',
  });
  t.equal(exchanged.status, 400);
  t.same(exchanged.body, {
    error: 'invalid_request',
    error_description: `subject_token_type must be ${ACCESS_TOKEN_TYPE}`,
  });
});

t.test('exchange reports missing parameters', async (t) => {

  const exchanged = await postForm(
    `${fixture.server.url}/o/token/`,
    { grant_type: EXCHANGE_GRANT },
    { authorization: basicAuthorization(fixture.mcp.id, fixture.mcp.secret) },
  );
  t.equal(exchanged.status, 400);
  t.equal(exchanged.body.error, 'invalid_request');
  t.match(exchanged.body.error_description, /subject_token/);
  t.match(exchanged.body.error_description, /subject_token_type/);
});

t.test('exchange rejects a wrong client secret', async (t) => {
  const subject = await obtainSubjectTokens(fixture);

  const wrongSecret = { id: fixture.mcp.id, secret: 'not-the-secret' };
  const exchanged = await exchange(fixture, wrongSecret, { subject_token: subject.accessToken });
  t.equal(exchanged.status, 401);
  t.equal(exchanged.body.error, 'invalid_client');
  t.match(exchanged.headers.get('www-authenticate') ?? '', /^Basic/);
});
