import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as oauth from 'oauth4webapi';
import t from 'tap';
import { registerClient } from '../src/oauth/clients.ts';
import { basicAuthorization, postForm, readResponse } from './helpers/code-flow.ts';
import { startServer, type TestServer } from './helpers/server.ts';

const CORE_GRANTS = ['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code'];
const SCOPES = ['read:profile', 'write:profile', 'read:teams', 'write:teams', 'read:products'];
const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'none'];

let server: TestServer;

t.before(async () => {
  server = await startServer(t);
});

function get(url: string, headers: Record<string, string> = {}) {
  return fetch(url, { headers, redirect: 'manual' }).then(readResponse);
}

function expectedServerMetadata(issuer: string) {
  return {
    issuer,
    authorization_endpoint: `${issuer}/o/authorize/`,
    token_endpoint: `${issuer}/o/token/`,
    device_authorization_endpoint: `${issuer}/o/device-authorization/`,
    revocation_endpoint: `${issuer}/o/revoke_token/`,
    introspection_endpoint: `${issuer}/o/introspect/`,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    registration_endpoint: `${issuer}/o/register/`,
    scopes_supported: SCOPES,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    token_endpoint_auth_methods_supported: AUTH_METHODS,
    revocation_endpoint_auth_methods_supported: AUTH_METHODS,
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
    client_id_metadata_document_supported: true,
    service_documentation: `${issuer}/`,
  };
}

function expectedResourceMetadata(issuer: string) {
  return {
    resource: `${issuer}/api/v1`,
    authorization_servers: [issuer],
    scopes_supported: SCOPES,
    bearer_methods_supported: ['header'],
    resource_name: 'Speedgate demo API',
  };
}

t.test('server metadata lists every capability', async (t) => {
  for (const suffix of ['', '/']) {
    const response = await get(`${server.url}/.well-known/oauth-authorization-server${suffix}`);
    t.equal(response.status, 200, `suffix "${suffix}"`);
    t.match(response.headers.get('content-type'), /^application\/json/);
    t.equal(response.headers.get('cache-control'), 'public, max-age=3600');

    const { grant_types_supported: grants, ...rest } = response.body;
    t.same(rest, expectedServerMetadata(server.url), `suffix "${suffix}"`);
    t.same(grants.slice(0, CORE_GRANTS.length), CORE_GRANTS, 'the core grants come first');
  }
});

t.test('every advertised grant is accepted', async (t) => {
  const metadata = await get(`${server.url}/.well-known/oauth-authorization-server`);

  for (const grantType of metadata.body.grant_types_supported) {
    const response = await postForm(`${server.url}/o/token/`, { grant_type: grantType, client_id: 'no-such-client' });
    t.not(response.body.error, 'unsupported_grant_type', grantType);
  }
});

t.test('issuer equals the configured value exactly', async (t) => {
  const metadata = await get(`${server.url}/.well-known/oauth-authorization-server`);
  const resource = await get(`${server.url}/.well-known/oauth-protected-resource`);

  t.equal(metadata.body.issuer, server.config.issuer);
  t.notMatch(metadata.body.issuer, /\/$/, 'no trailing slash');
  t.equal(resource.body.authorization_servers[0], metadata.body.issuer);
});

t.test('oauth4webapi accepts the server metadata', async (t) => {
  const issuer = new URL(server.url);
  const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', [oauth.allowInsecureRequests]: true });
  const metadata = await oauth.processDiscoveryResponse(issuer, response);

  t.equal(metadata.issuer, server.url);
  t.equal(metadata.token_endpoint, `${server.url}/o/token/`);
});

t.test('every advertised endpoint is routed', async (t) => {
  const metadata = expectedServerMetadata(server.url);

  const authorize = await fetch(metadata.authorization_endpoint, { redirect: 'manual' });
  t.equal(authorize.status, 400, 'authorization endpoint shows its error page');

  const jwks = await get(metadata.jwks_uri);
  t.equal(jwks.status, 200);
  t.ok(jwks.body.keys.length >= 1, 'the JWKS has a key');
  t.same(jwks.body.keys.filter((key: { d?: string }) => key.d !== undefined), [], 'no private key material');

  for (const endpoint of [metadata.token_endpoint, metadata.device_authorization_endpoint, metadata.revocation_endpoint, metadata.introspection_endpoint]) {
    const response = await postForm(endpoint, {});
    t.not(response.status, 404, endpoint);
    t.type(response.body.error, 'string', endpoint);
  }

  const registration = await fetch(metadata.registration_endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(registration.status, 400, 'registration endpoint validates the body');
});

t.test('resource metadata is served at each path', async (t) => {
  const paths = [
    '/.well-known/oauth-protected-resource',
    '/.well-known/oauth-protected-resource/',
    '/.well-known/oauth-protected-resource/api/v1',
    '/.well-known/oauth-protected-resource/api/v1/',
    '/.well-known/oauth-protected-resource/api/v1/me',
    '/.well-known/oauth-protected-resource/api/v1/me/',
    '/.well-known/oauth-protected-resource/api/v1/teams/',
  ];

  for (const metadataPath of paths) {
    const response = await get(`${server.url}${metadataPath}`);
    t.equal(response.status, 200, metadataPath);
    t.equal(response.headers.get('cache-control'), 'public, max-age=3600', metadataPath);
    t.same(response.body, expectedResourceMetadata(server.url), metadataPath);
  }
});

t.test('strict RFC 9728 client accepts the API metadata', async (t) => {
  // The path-inserted form for the API's own identifier is the one the 401 challenge names.
  const resource = new URL(`${server.url}/api/v1`);
  const response = await oauth.resourceDiscoveryRequest(resource, { [oauth.allowInsecureRequests]: true });
  const metadata = await oauth.processResourceDiscoveryResponse(resource, response);

  t.equal(metadata.resource, `${server.url}/api/v1`);
  t.same(metadata.authorization_servers, [server.url]);
});

t.test('OpenID configuration is a JSON 404', async (t) => {
  for (const metadataPath of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server/api/v1']) {
    const response = await get(`${server.url}${metadataPath}`);
    t.equal(response.status, 404, metadataPath);
    t.match(response.headers.get('content-type'), /^application\/json/, metadataPath);
    t.same(response.body, { error: 'invalid_request', error_description: `No route for GET ${metadataPath}` }, metadataPath);
  }
});

t.test('API 401 names the resource metadata', async (t) => {
  const metadataUrl = `${server.url}/.well-known/oauth-protected-resource/api/v1`;

  const missing = await get(`${server.url}/api/v1/me/`);
  t.equal(missing.status, 401);
  t.equal(missing.headers.get('www-authenticate'), `Bearer realm="speedgate", resource_metadata="${metadataUrl}"`);
  t.same(missing.body, { error: 'invalid_token', error_description: 'An access token is required' });

  const invalid = await get(`${server.url}/api/v1/me/`, { authorization: 'Bearer not-a-token' });
  t.equal(invalid.status, 401);
  t.equal(
    invalid.headers.get('www-authenticate'),
    `Bearer realm="speedgate", error="invalid_token", error_description="The access token is invalid or expired", resource_metadata="${metadataUrl}"`,
  );
  t.same(invalid.body, { error: 'invalid_token', error_description: 'The access token is invalid or expired' });

  const advertised = await get(metadataUrl);
  t.equal(advertised.status, 200, 'the named metadata URL resolves');
});

t.test('API 403 names the missing scope', async (t) => {
  const { db, scopes } = server.app.speedgate;
  const { client, clientSecret } = await registerClient(
    db,
    scopes,
    { name: 'Profile Reader', grantTypes: ['client_credentials'], scopes: ['read:profile'], confidential: true, registrationType: 'operator' },
    server.clock.now(),
  );
  const token = await postForm(`${server.url}/o/token/`, { grant_type: 'client_credentials', scope: 'read:profile' }, { authorization: basicAuthorization(client.id, clientSecret!) });
  t.equal(token.status, 200);

  const response = await get(`${server.url}/api/v1/teams/`, { authorization: `Bearer ${token.body.access_token}` });
  t.equal(response.status, 403);
  t.equal(
    response.headers.get('www-authenticate'),
    'Bearer realm="speedgate", error="insufficient_scope", error_description="This request requires the scope read:teams", ' +
      `scope="read:teams", resource_metadata="${server.url}/.well-known/oauth-protected-resource/api/v1"`,
  );
  t.same(response.body, { error: 'insufficient_scope', error_description: 'This request requires the scope read:teams', scope: 'read:teams' });
});

t.test('registration endpoint is hidden when off', async (t) => {
  const folder = mkdtempSync(path.join(tmpdir(), 'speedgate-scopes-'));
  t.teardown(() => rmSync(folder, { recursive: true, force: true }));
  const scopesFile = path.join(folder, 'scopes.json');
  writeFileSync(scopesFile, JSON.stringify([{ name: 'read:billing', description: 'Read your invoices' }]));

  const closed = await startServer(t, { env: { DCR_ENABLED: 'false', SCOPES_FILE: scopesFile } });
  const response = await get(`${closed.url}/.well-known/oauth-authorization-server`);

  const { registration_endpoint, ...rest } = expectedServerMetadata(closed.url);
  const { grant_types_supported: grants, ...served } = response.body;
  t.equal(response.status, 200);
  t.same(served, { ...rest, scopes_supported: [...SCOPES, 'read:billing'] }, 'no registration_endpoint; operator scopes listed');
  t.type(grants, Array);
  t.equal(registration_endpoint, `${closed.url}/o/register/`);

  const resource = await get(`${closed.url}/.well-known/oauth-protected-resource`);
  t.same(resource.body.scopes_supported, [...SCOPES, 'read:billing']);
});
