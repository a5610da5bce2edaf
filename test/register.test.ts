import t from 'tap';
import { registerClient } from '../src/oauth/clients.ts';
import { sha256Hex } from '../src/oauth/secrets.ts';
import { basicAuthorization, postForm, postJson, readResponse, type JsonResponse } from './helpers/code-flow.ts';
import { startServer, type TestServer } from './helpers/server.ts';

const ALL_SCOPES = 'read:profile write:profile read:teams write:teams read:products';
const REDIRECT_URI = 'https://app.example/oauth/callback';

let server: TestServer;
let endpoint: string;

t.before(async () => {
  // Every registration in this file comes from 127.0.0.1, so this server's limit
  // is set high. The rate-limit test starts a server of its own.
  server = await startServer(t, { env: { DCR_RATE_LIMIT: '10000' } });
  endpoint = `${server.url}/o/register/`;
});

function register(body: unknown, headers: Record<string, string> = {}): Promise<JsonResponse> {
  return postJson(endpoint, body, headers);
}

async function sendRaw(url: string, method: string, body: string | undefined, headers: Record<string, string>): Promise<JsonResponse> {
  return readResponse(await fetch(url, { method, headers, body }));
}

function manage(url: string, method: 'GET' | 'PUT' | 'DELETE', token: string, body?: unknown): Promise<JsonResponse> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return sendRaw(url, method, body === undefined ? undefined : JSON.stringify(body), headers);
}

/** Returns the path of every `null` in a JSON value. */
function findNulls(value: unknown, path = '$'): string[] {
  if (value === null) return [path];
  if (Array.isArray(value)) return value.flatMap((item, index) => findNulls(item, `${path}[${index}]`));
  if (typeof value === 'object') return Object.entries(value).flatMap(([key, item]) => findNulls(item, `${path}.${key}`));
  return [];
}

async function countClients(): Promise<number> {
  const row = await server.app.speedgate.db
    .selectFrom('clients')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

function metadataError(description: string) {
  return { error: 'invalid_client_metadata', error_description: description };
}

function redirectError(description: string) {
  return { error: 'invalid_redirect_uri', error_description: description };
}

const INVALID_REGISTRATION_TOKEN = { error: 'invalid_token', error_description: 'The registration access token is invalid' };

const FULL_REQUEST = {
  redirect_uris: [REDIRECT_URI, 'http://127.0.0.1/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_post',
  scope: 'read:profile read:teams',
  client_name: 'Example MCP Client',
  application_type: 'web',
  client_uri: 'https://app.example/',
  logo_uri: 'https://app.example/logo.png',
  tos_uri: 'https://app.example/terms',
  policy_uri: 'https://app.example/privacy',
  contacts: ['ops@app.example'],
  software_id: 'example-mcp-client',
  software_version: '2.1.0',
};

t.test('registration echoes every stored field', async (t) => {
  const before = Math.floor(server.clock.now().getTime() / 1000);
  const response = await register(FULL_REQUEST);

  t.equal(response.status, 201);
  t.equal(response.headers.get('cache-control'), 'no-store');
  const { client_id, client_secret, registration_access_token, client_id_issued_at, ...stored } = response.body;
  t.match(client_id, /^[A-Za-z0-9_-]{20,}$/);
  t.match(client_secret, /^sgs_[A-Za-z0-9_-]{40,}$/);
  t.match(registration_access_token, /^sgm_[A-Za-z0-9_-]{40,}$/);
  t.ok(client_id_issued_at >= before && client_id_issued_at <= before + 5, 'client_id_issued_at is the registration time');
  t.same(stored, {
    ...FULL_REQUEST,
    client_secret_expires_at: 0,
    registration_client_uri: `${server.url}/o/register/${client_id}`,
  });
  t.same(findNulls(response.body), [], 'no field is null');

  const row = await server.app.speedgate.db.selectFrom('clients').selectAll().where('id', '=', client_id).executeTakeFirstOrThrow();
  t.equal(row.secret_hash, sha256Hex(client_secret), 'the secret is stored as its SHA-256 hash');
  t.equal(row.registration_access_token_hash, sha256Hex(registration_access_token));
  t.equal(row.registration_type, 'dynamic');
  t.equal(row.require_pkce, true);
});

t.test('omitted fields take RFC 7591 defaults', async (t) => {
  const response = await register({ redirect_uris: [REDIRECT_URI] });

  t.equal(response.status, 201);
  t.equal(response.body.token_endpoint_auth_method, 'client_secret_basic');
  t.same(response.body.grant_types, ['authorization_code']);
  t.same(response.body.response_types, ['code']);
  t.equal(response.body.scope, ALL_SCOPES, 'every grantable scope, never admin');
  t.equal(response.body.application_type, 'web');
  t.type(response.body.client_secret, 'string');
  t.same(findNulls(response.body), []);
});

for (const method of ['client_secret_post', 'client_secret_basic']) {
  t.test(`${method} client gets a secret`, async (t) => {
    const response = await register({ redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: method });

    t.equal(response.status, 201);
    t.equal(response.body.token_endpoint_auth_method, method);
    t.match(response.body.client_secret, /^sgs_/);
    t.equal(response.body.client_secret_expires_at, 0);
  });
}

t.test('public client gets no secret', async (t) => {
  const response = await register({ redirect_uris: ['http://127.0.0.1:33418/callback'], token_endpoint_auth_method: 'none' });

  t.equal(response.status, 201);
  t.equal(response.body.token_endpoint_auth_method, 'none');
  t.notOk('client_secret' in response.body, 'no client_secret');
  t.notOk('client_secret_expires_at' in response.body, 'no client_secret_expires_at');
  t.match(response.body.registration_access_token, /^sgm_/);

  const row = await server.app.speedgate.db.selectFrom('clients').selectAll().where('id', '=', response.body.client_id).executeTakeFirstOrThrow();
  t.equal(row.secret_hash, null);
});

t.test('native app schemes and loopback register', async (t) => {
  const uris = ['com.example.app:/oauth2redirect', 'cursor://anysphere.cursor-retrieval/oauth/callback', 'http://[::1]/callback', 'http://localhost:8080/cb'];
  const response = await register({ redirect_uris: uris, token_endpoint_auth_method: 'none', application_type: 'native' });

  t.equal(response.status, 201);
  t.same(response.body.redirect_uris, uris);
  t.equal(response.body.application_type, 'native');
});

t.test('client_credentials client needs no response_types', async (t) => {
  const response = await register({ grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', scope: 'read:products' });

  t.equal(response.status, 201);
  t.same(response.body.grant_types, ['client_credentials']);
  t.same(response.body.response_types, []);
  t.same(response.body.redirect_uris, []);
});

t.test('dangerous redirect URIs are rejected', async (t) => {
  const cases: [string, string][] = [
    ['javascript:alert(1)', 'redirect_uri javascript:alert(1): the javascript: scheme is not allowed'],
    ['JavaScript:alert(document.cookie)', 'redirect_uri JavaScript:alert(document.cookie): the javascript: scheme is not allowed'],
    ['data:text/html,<script>alert(1)</script>', 'redirect_uri data:text/html,<script>alert(1)</script>: the data: scheme is not allowed'],
    ['file:///etc/passwd', 'redirect_uri file:///etc/passwd: the file: scheme is not allowed'],
    ['vbscript:msgbox(1)', 'redirect_uri vbscript:msgbox(1): the vbscript: scheme is not allowed'],
    ['https://app.example/callback#section', 'redirect_uri https://app.example/callback#section: must not contain a fragment'],
    ['https://app.example/callback#', 'redirect_uri https://app.example/callback#: must not contain a fragment'],
    ['https://*.app.example/callback', 'redirect_uri https://*.app.example/callback: wildcards are not allowed'],
    ['https://app.example/*', 'redirect_uri https://app.example/*: wildcards are not allowed'],
    ['http://app.example/callback', 'redirect_uri http://app.example/callback: http is allowed only for loopback addresses; use https'],
    ['http://127.0.0.1.nip.io/callback', 'redirect_uri http://127.0.0.1.nip.io/callback: http is allowed only for loopback addresses; use https'],
    ['/relative/callback', 'redirect_uri /relative/callback: not an absolute URI'],
  ];

  for (const [uri, description] of cases) {
    const response = await register({ redirect_uris: [REDIRECT_URI, uri], token_endpoint_auth_method: 'none' });
    t.equal(response.status, 400, uri);
    t.same(response.body, redirectError(description), uri);
  }
});

t.test('authorization code client needs a redirect URI', async (t) => {
  for (const body of [{}, { redirect_uris: [] }]) {
    const response = await register({ ...body, token_endpoint_auth_method: 'none' });
    t.equal(response.status, 400);
    t.same(response.body, redirectError('authorization_code requires at least one redirect_uri'));
  }
});

t.test('invalid metadata is rejected naming the field', async (t) => {
  const base = { redirect_uris: [REDIRECT_URI] };
  const cases: [string, unknown, string][] = [
    ['unknown grant type', { ...base, grant_types: ['password'] }, 'Unsupported grant_types: password'],
    ['implicit grant', { ...base, grant_types: ['authorization_code', 'implicit'] }, 'Unsupported grant_types: implicit'],
    ['admin scope', { ...base, scope: 'read:profile admin' }, 'The scope admin cannot be granted to applications'],
    ['unknown scope', { ...base, scope: 'read:profile read:everything' }, 'Unknown scope: read:everything'],
    [
      'unknown auth method',
      { ...base, token_endpoint_auth_method: 'private_key_jwt' },
      'Unsupported token_endpoint_auth_method: private_key_jwt; use none, client_secret_basic or client_secret_post',
    ],
    ['redirect_uris as a string', { redirect_uris: REDIRECT_URI }, 'redirect_uris must be an array of strings'],
    ['redirect_uris with a number', { redirect_uris: [REDIRECT_URI, 7] }, 'redirect_uris must be an array of strings'],
    ['redirect_uri too long', { redirect_uris: [`https://app.example/${'a'.repeat(2000)}`] }, 'Each entry of redirect_uris must be at most 2000 characters'],
    ['too many redirect_uris', { redirect_uris: Array.from({ length: 21 }, (_, i) => `https://app.example/${i}`) }, 'redirect_uris must have at most 20 entries'],
    ['client_name as a number', { ...base, client_name: 42 }, 'client_name must be a string'],
    ['client_name too long', { ...base, client_name: 'n'.repeat(101) }, 'client_name must be at most 100 characters'],
    ['blank client_name', { ...base, client_name: '   ' }, 'client_name must be 1 to 100 characters'],
    ['response type token', { ...base, response_types: ['token'] }, 'Unsupported response_types: token; only code is supported'],
    [
      'code grant without code response',
      { ...base, grant_types: ['authorization_code'], response_types: [] },
      'grant_types authorization_code and response_types code must be registered together',
    ],
    ['grant_types as a string', { ...base, grant_types: 'authorization_code' }, 'grant_types must be an array of strings'],
    ['scope as a list', { ...base, scope: ['read:profile'] }, 'scope must be a string'],
    ['too many contacts', { ...base, contacts: Array.from({ length: 11 }, (_, i) => `c${i}@app.example`) }, 'contacts must have at most 10 entries'],
    ['script logo_uri', { ...base, logo_uri: 'javascript:alert(1)' }, 'logo_uri must be an https URL'],
    ['relative client_uri', { ...base, client_uri: '/home' }, 'client_uri must be an absolute https URL'],
    ['unknown application_type', { ...base, application_type: 'desktop' }, 'application_type must be web or native'],
    [
      'public client_credentials client',
      { grant_types: ['client_credentials'], token_endpoint_auth_method: 'none' },
      'client_credentials requires a confidential client',
    ],
    ['JSON array body', [base], 'The registration request must be a JSON object'],
    ['JSON string body', 'hello', 'The registration request must be a JSON object'],
  ];

  for (const [label, body, description] of cases) {
    const response = await register(body);
    t.equal(response.status, 400, label);
    t.same(response.body, metadataError(description), label);
  }
});

t.test('oversized body gets 413', async (t) => {
  for (const size of [17 * 1024, 70 * 1024, 1024 * 1024]) {
    const body = JSON.stringify({ redirect_uris: [REDIRECT_URI], client_name: 'x', padding: 'p'.repeat(size) });
    const response = await sendRaw(endpoint, 'POST', body, { 'content-type': 'application/json' });
    t.equal(response.status, 413, `${size} bytes`);
    t.same(response.body, { error: 'invalid_request', error_description: 'The request body is too large' }, `${size} bytes`);
  }
});

t.test('non-JSON bodies get a JSON error', async (t) => {
  const wrongType = metadataError('The registration request must be sent as application/json');
  const cases: [string, string, Record<string, string>, number, object][] = [
    ['form', `redirect_uris=${encodeURIComponent(REDIRECT_URI)}`, { 'content-type': 'application/x-www-form-urlencoded' }, 400, wrongType],
    ['text', JSON.stringify({ redirect_uris: [REDIRECT_URI] }), { 'content-type': 'text/plain' }, 400, wrongType],
    ['invalid JSON', '{"redirect_uris": [', { 'content-type': 'application/json' }, 400, { error: 'invalid_request', error_description: 'The request body could not be parsed' }],
    ['empty JSON', '', { 'content-type': 'application/json' }, 400, { error: 'invalid_request', error_description: 'The request body could not be parsed' }],
    ['prototype key', '{"__proto__": {"admin": true}}', { 'content-type': 'application/json' }, 400, { error: 'invalid_request', error_description: 'The request body could not be parsed' }],
    ['XML', '<client/>', { 'content-type': 'application/xml' }, 415, { error: 'invalid_request', error_description: 'This endpoint does not accept the Content-Type of the request' }],
  ];

  for (const [label, body, headers, status, expected] of cases) {
    const response = await sendRaw(endpoint, 'POST', body, headers);
    t.equal(response.status, status, label);
    t.match(response.headers.get('content-type'), /^application\/json/, label);
    t.same(response.body, expected, label);
  }
});

t.test('rejected registrations leave no row', async (t) => {
  const before = await countClients();

  await register({ redirect_uris: ['javascript:alert(1)'] });
  await register({ redirect_uris: [REDIRECT_URI], scope: 'admin' });
  await register({ redirect_uris: [REDIRECT_URI], scope: 'read:nothing' });
  await register({ grant_types: ['client_credentials'], token_endpoint_auth_method: 'none' });
  await sendRaw(endpoint, 'POST', JSON.stringify({ redirect_uris: [REDIRECT_URI], padding: 'p'.repeat(20_000) }), { 'content-type': 'application/json' });
  await sendRaw(endpoint, 'POST', `redirect_uris=${REDIRECT_URI}`, { 'content-type': 'application/x-www-form-urlencoded' });

  t.equal(await countClients(), before);
});

t.test('configuration endpoint returns the client', async (t) => {
  const registered = await register(FULL_REQUEST);
  const { client_secret, registration_access_token, ...expected } = registered.body;

  const response = await manage(registered.body.registration_client_uri, 'GET', registration_access_token);
  t.equal(response.status, 200);
  t.equal(response.headers.get('cache-control'), 'no-store');
  const { client_secret_expires_at, ...withoutSecretExpiry } = expected;
  t.same(response.body, withoutSecretExpiry, 'the stored metadata, without the secret or the token');
  t.equal(client_secret_expires_at, 0);
  t.same(findNulls(response.body), []);
});

t.test('configuration endpoint rejects wrong tokens', async (t) => {
  const first = await register({ redirect_uris: [REDIRECT_URI] });
  const second = await register({ redirect_uris: [REDIRECT_URI] });
  const uri = first.body.registration_client_uri;

  const cases: [string, string, Record<string, string>][] = [
    ['no token', uri, {}],
    ['wrong token', uri, { authorization: 'Bearer sgm_not-the-right-token' }],
    ['other client token', uri, { authorization: `Bearer ${second.body.registration_access_token}` }],
    ['client secret as token', uri, { authorization: `Bearer ${first.body.client_secret}` }],
    ['Basic credentials', uri, { authorization: basicAuthorization(first.body.client_id, first.body.client_secret) }],
    ['unknown client', `${endpoint}no-such-client`, { authorization: `Bearer ${first.body.registration_access_token}` }],
  ];

  for (const [label, url, headers] of cases) {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const body = method === 'PUT' ? JSON.stringify({ client_id: first.body.client_id, redirect_uris: [REDIRECT_URI] }) : undefined;
      const response = await sendRaw(url, method, body, body === undefined ? headers : { ...headers, 'content-type': 'application/json' });
      t.equal(response.status, 401, `${label}, ${method}`);
      t.equal(response.headers.get('www-authenticate'), 'Bearer realm="speedgate"', `${label}, ${method}`);
      t.same(response.body, INVALID_REGISTRATION_TOKEN, `${label}, ${method}`);
    }
  }

  const still = await manage(uri, 'GET', first.body.registration_access_token);
  t.equal(still.status, 200, 'a rejected DELETE leaves the client');
});

t.test('operator clients have no configuration endpoint', async (t) => {
  const { client } = await registerClient(
    server.app.speedgate.db,
    server.app.speedgate.scopes,
    { name: 'Operator App', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code'], registrationType: 'operator' },
    server.clock.now(),
  );

  const response = await manage(`${endpoint}${client.id}`, 'GET', 'sgm_anything');
  t.equal(response.status, 401);
  t.same(response.body, INVALID_REGISTRATION_TOKEN);
});

t.test('PUT replaces the client metadata', async (t) => {
  const registered = await register(FULL_REQUEST);
  const { client_id, registration_access_token, registration_client_uri } = registered.body;

  const update = {
    client_id,
    redirect_uris: ['https://app.example/v2/callback'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'read:products',
    client_name: 'Example MCP Client v2',
  };
  const response = await manage(registration_client_uri, 'PUT', registration_access_token, update);

  t.equal(response.status, 200);
  t.same(response.body, {
    ...update,
    client_id_issued_at: registered.body.client_id_issued_at,
    response_types: ['code'],
    application_type: 'web',
    registration_client_uri,
  });
  t.same(findNulls(response.body), []);

  const read = await manage(registration_client_uri, 'GET', registration_access_token);
  t.same(read.body, response.body, 'GET returns the update');

  const row = await server.app.speedgate.db.selectFrom('clients').selectAll().where('id', '=', client_id).executeTakeFirstOrThrow();
  t.equal(row.secret_hash, sha256Hex(registered.body.client_secret), 'the secret is kept');
});

t.test('PUT with the current secret succeeds', async (t) => {
  const registered = await register(FULL_REQUEST);
  const { client_id, client_secret, registration_access_token, registration_client_uri } = registered.body;

  const response = await manage(registration_client_uri, 'PUT', registration_access_token, { ...FULL_REQUEST, client_id, client_secret });
  t.equal(response.status, 200);
  t.notOk('client_secret' in response.body, 'the secret is not sent again');
});

t.test('PUT rejects invalid updates unchanged', async (t) => {
  const registered = await register(FULL_REQUEST);
  const { client_id, registration_access_token, registration_client_uri } = registered.body;
  const publicClient = await register({ redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' });

  const cases: [string, string, string, unknown, object][] = [
    ['other client_id', registration_client_uri, registration_access_token, { ...FULL_REQUEST, client_id: publicClient.body.client_id }, metadataError('client_id in the body must match the client being updated')],
    ['missing client_id', registration_client_uri, registration_access_token, FULL_REQUEST, metadataError('client_id in the body must match the client being updated')],
    ['wrong client_secret', registration_client_uri, registration_access_token, { ...FULL_REQUEST, client_id, client_secret: 'sgs_wrong' }, metadataError('client_secret does not match the current secret')],
    [
      'secret to none',
      registration_client_uri,
      registration_access_token,
      { ...FULL_REQUEST, client_id, token_endpoint_auth_method: 'none' },
      metadataError('token_endpoint_auth_method cannot change between none and a secret method'),
    ],
    [
      'none to secret',
      publicClient.body.registration_client_uri,
      publicClient.body.registration_access_token,
      { client_id: publicClient.body.client_id, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'client_secret_basic' },
      metadataError('token_endpoint_auth_method cannot change between none and a secret method'),
    ],
    ['script redirect', registration_client_uri, registration_access_token, { ...FULL_REQUEST, client_id, redirect_uris: ['javascript:alert(1)'] }, redirectError('redirect_uri javascript:alert(1): the javascript: scheme is not allowed')],
    ['admin scope', registration_client_uri, registration_access_token, { ...FULL_REQUEST, client_id, scope: 'admin' }, metadataError('The scope admin cannot be granted to applications')],
  ];

  for (const [label, uri, token, body, expected] of cases) {
    const response = await manage(uri, 'PUT', token, body);
    t.equal(response.status, 400, label);
    t.same(response.body, expected, label);
  }

  const read = await manage(registration_client_uri, 'GET', registration_access_token);
  t.equal(read.body.client_name, FULL_REQUEST.client_name, 'the client is unchanged');
  t.equal(read.body.token_endpoint_auth_method, 'client_secret_post');
  t.same(read.body.redirect_uris, FULL_REQUEST.redirect_uris);
  t.equal(read.body.scope, FULL_REQUEST.scope);
});

t.test('DELETE stops the client getting tokens', async (t) => {
  const registered = await register({ grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', scope: 'read:products' });
  const { client_id, client_secret, registration_access_token, registration_client_uri } = registered.body;
  t.equal(registered.status, 201);

  const tokenRequest = () => postForm(`${server.url}/o/token/`, { grant_type: 'client_credentials', scope: 'read:products' }, { authorization: basicAuthorization(client_id, client_secret) });
  const issued = await tokenRequest();
  t.equal(issued.status, 200);
  const products = () => fetch(`${server.url}/api/v1/products/`, { headers: { authorization: `Bearer ${issued.body.access_token}` } });
  t.equal((await products()).status, 200, 'the token works before the deletion');

  const deleted = await sendRaw(registration_client_uri, 'DELETE', undefined, { authorization: `Bearer ${registration_access_token}` });
  t.equal(deleted.status, 204);
  t.equal(deleted.body, '');

  const afterDelete = await tokenRequest();
  t.equal(afterDelete.status, 401);
  t.equal(afterDelete.headers.get('www-authenticate'), 'Basic realm="speedgate"');
  t.same(afterDelete.body, { error: 'invalid_client', error_description: 'Client authentication failed' });
  t.equal((await products()).status, 401, 'tokens issued before the deletion stop working');

  const read = await manage(registration_client_uri, 'GET', registration_access_token);
  t.equal(read.status, 401);
  t.same(read.body, INVALID_REGISTRATION_TOKEN);
});

t.test('registration off returns 403', async (t) => {
  const closed = await startServer(t, { env: { DCR_ENABLED: 'false' } });

  const response = await postJson(`${closed.url}/o/register/`, { redirect_uris: [REDIRECT_URI] });
  t.equal(response.status, 403);
  t.same(response.body, { error: 'access_denied', error_description: 'Dynamic client registration is disabled on this server' });
});

t.test('initial access token is required when set', async (t) => {
  const guarded = await startServer(t, { env: { DCR_INITIAL_ACCESS_TOKEN: 'operator-issued-token' } });
  const url = `${guarded.url}/o/register/`;
  const body = { redirect_uris: [REDIRECT_URI] };
  const invalid = { error: 'invalid_token', error_description: 'Registration requires a valid initial access token' };

  for (const [label, headers] of [
    ['no token', {}],
    ['wrong token', { authorization: 'Bearer operator-issued-tokeN' }],
    ['token prefix', { authorization: 'Bearer operator-issued' }],
    ['Basic scheme', { authorization: `Basic ${Buffer.from('operator-issued-token:').toString('base64')}` }],
  ] as [string, Record<string, string>][]) {
    const response = await postJson(url, body, headers);
    t.equal(response.status, 401, label);
    t.equal(response.headers.get('www-authenticate'), 'Bearer realm="speedgate"', label);
    t.same(response.body, invalid, label);
  }

  const accepted = await postJson(url, body, { authorization: 'Bearer operator-issued-token' });
  t.equal(accepted.status, 201);
  t.type(accepted.body.client_id, 'string');
});

t.test('registrations are rate limited per address', async (t) => {
  const limited = await startServer(t, { env: { DCR_RATE_LIMIT: '3', DCR_INITIAL_ACCESS_TOKEN: 'operator-issued-token' } });
  const url = `${limited.url}/o/register/`;
  const body = { redirect_uris: [REDIRECT_URI] };
  const authorized = { authorization: 'Bearer operator-issued-token' };

  for (let attempt = 1; attempt <= 2; attempt += 1) {
    const response = await postJson(url, body, authorized);
    t.equal(response.status, 201, `registration ${attempt}`);
  }
  const wrongToken = await postJson(url, body, { authorization: 'Bearer guess' });
  t.equal(wrongToken.status, 401, 'a wrong token counts as an attempt');

  const limitedResponse = await postJson(url, body, authorized);
  t.equal(limitedResponse.status, 429);
  t.same(limitedResponse.body, { error: 'invalid_request', error_description: 'Too many registrations from this address; retry later' });
  const retryAfter = Number(limitedResponse.headers.get('retry-after'));
  t.ok(retryAfter > 3500 && retryAfter <= 3600, `Retry-After ${retryAfter} is the rest of the hour`);

  const guess = await postJson(url, body, { authorization: 'Bearer another-guess' });
  t.equal(guess.status, 429, 'token guesses are limited too');

  limited.clock.advance(3601);
  const nextWindow = await postJson(url, body, authorized);
  t.equal(nextWindow.status, 201, 'the next window accepts registrations again');
});
