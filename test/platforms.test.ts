import t, { type Test } from 'tap';
import { registerClient, type ClientRegistration } from '../src/oauth/clients.ts';
import { OAuthError } from '../src/oauth/errors.ts';
import type { BrowserSession } from './helpers/browser-session.ts';
import { approveConsent, basicAuthorization, createPkce, postForm, postJson, readResponse, signInUser, type JsonResponse } from './helpers/code-flow.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// Each test replays the requests one platform sends, with the parameters and
// encodings it uses, against a real server.

const CHATGPT_CALLBACK = 'https://chatgpt.com/aip/g-6f1c2d3e4b5a69788796a5b4c3d2e1f0/oauth/callback';
const N8N_CALLBACK = 'https://n8n.example.com/rest/oauth2-credential/callback';
const CLAUDE_CALLBACK = 'https://claude.ai/api/mcp/auth_callback';

let server: TestServer;
let tokenEndpoint: string;

t.before(async () => {
  server = await startServer(t);
  tokenEndpoint = `${server.url}/o/token/`;
});

async function createClient(registration: Partial<ClientRegistration>) {
  const { db, scopes } = server.app.speedgate;
  return registerClient(
    db,
    scopes,
    { name: 'Platform Client', grantTypes: ['authorization_code', 'refresh_token'], registrationType: 'operator', ...registration },
    server.clock.now(),
  );
}

function authorizationUrl(parameters: Record<string, string>): string {
  return `${server.url}/o/authorize/?${new URLSearchParams(parameters).toString()}`;
}

/**
 * Approves an authorization request in the browser, or lets the server skip
 * the consent page for scopes approved before, and returns the code from the
 * redirect back.
 */
async function obtainCode(t: Test, browser: BrowserSession, parameters: Record<string, string>, untick: string[] = []): Promise<string> {
  const consent = await approveConsent(browser, authorizationUrl(parameters), untick);
  t.equal(consent.status, 303);
  t.equal(`${consent.location.origin}${consent.location.pathname}`, parameters.redirect_uri);
  t.equal(consent.location.searchParams.get('state'), parameters.state ?? null);
  t.equal(consent.location.searchParams.get('iss'), server.url);
  return consent.location.searchParams.get('code') ?? '';
}

function checkTokenResponse(t: Test, response: JsonResponse, scope: string): void {
  t.equal(response.status, 200);
  t.equal(response.headers.get('cache-control'), 'no-store');
  t.equal(response.headers.get('pragma'), 'no-cache');
  t.match(response.body, { token_type: 'Bearer', expires_in: 3600, scope });
  t.type(response.body.access_token, 'string');
  t.type(response.body.refresh_token, 'string');
}

async function callApi(path: string, accessToken: string): Promise<number> {
  const response = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${accessToken}` } });
  return response.status;
}

t.test('ChatGPT Actions with client_secret_post', async (t) => {
  const { client, clientSecret } = await createClient({ name: 'Custom GPT', redirectUris: [CHATGPT_CALLBACK], tokenEndpointAuthMethod: 'client_secret_post' });
  const { browser } = await signInUser(server);
  const pkce = createPkce();

  const code = await obtainCode(t, browser, {
    response_type: 'code',
    client_id: client.id,
    redirect_uri: CHATGPT_CALLBACK,
    state: 'gpt-state-0001',
    scope: 'read:profile read:teams',
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  });

  const tokens = await postForm(tokenEndpoint, {
    grant_type: 'authorization_code',
    client_id: client.id,
    client_secret: clientSecret!,
    code,
    redirect_uri: CHATGPT_CALLBACK,
    code_verifier: pkce.verifier,
  });
  checkTokenResponse(t, tokens, 'read:profile read:teams');
  t.equal(await callApi('/api/v1/me/', tokens.body.access_token), 200);

  const refreshed = await postForm(tokenEndpoint, {
    grant_type: 'refresh_token',
    client_id: client.id,
    client_secret: clientSecret!,
    refresh_token: tokens.body.refresh_token,
  });
  checkTokenResponse(t, refreshed, 'read:profile read:teams');
});

t.test('ChatGPT Actions with Basic header', async (t) => {
  const { client, clientSecret } = await createClient({ name: 'Custom GPT', redirectUris: [CHATGPT_CALLBACK], tokenEndpointAuthMethod: 'client_secret_basic' });
  const { browser } = await signInUser(server);
  const pkce = createPkce();

  const code = await obtainCode(t, browser, {
    response_type: 'code',
    client_id: client.id,
    redirect_uri: CHATGPT_CALLBACK,
    state: 'gpt-state-0002',
    scope: 'read:profile',
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  });

  const authorization = `Basic ${Buffer.from(`${client.id}:${clientSecret}`).toString('base64')}`;
  const tokens = await postForm(tokenEndpoint, { grant_type: 'authorization_code', code, redirect_uri: CHATGPT_CALLBACK, code_verifier: pkce.verifier }, { authorization });
  checkTokenResponse(t, tokens, 'read:profile');

  const wrongSecret = await postForm(
    tokenEndpoint,
    { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token },
    { authorization: basicAuthorization(client.id, `${clientSecret}x`) },
  );
  t.equal(wrongSecret.status, 401);
  t.equal(wrongSecret.headers.get('www-authenticate'), 'Basic realm="speedgate"');
  t.same(wrongSecret.body, { error: 'invalid_client', error_description: 'Client authentication failed' });

  const refreshed = await postForm(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token }, { authorization });
  checkTokenResponse(t, refreshed, 'read:profile');
});

t.test('operator-exempted client skips PKCE', async (t) => {
  const { client, clientSecret } = await createClient({
    name: 'Legacy GPT',
    redirectUris: [CHATGPT_CALLBACK],
    tokenEndpointAuthMethod: 'client_secret_post',
    requirePkce: false,
  });
  const { browser } = await signInUser(server);
  const authorize = { response_type: 'code', client_id: client.id, redirect_uri: CHATGPT_CALLBACK, state: 'gpt-state-0003', scope: 'read:profile' };
  const credentials = { client_id: client.id, client_secret: clientSecret! };

  const code = await obtainCode(t, browser, authorize);
  const tokens = await postForm(tokenEndpoint, { grant_type: 'authorization_code', code, redirect_uri: CHATGPT_CALLBACK, ...credentials });
  checkTokenResponse(t, tokens, 'read:profile');

  // A verifier with no challenge behind it is a downgrade attempt (RFC 9700 section 2.1.1).
  // The scope was approved above, so this request skips the consent page.
  const secondCode = await obtainCode(t, browser, authorize);
  const downgrade = await postForm(tokenEndpoint, {
    grant_type: 'authorization_code',
    code: secondCode,
    redirect_uri: CHATGPT_CALLBACK,
    code_verifier: createPkce().verifier,
    ...credentials,
  });
  t.equal(downgrade.status, 400);
  t.same(downgrade.body, { error: 'invalid_grant', error_description: 'A code_verifier was sent, but the authorization request had no code_challenge' });

  const pkce = createPkce();
  const pkceCode = await obtainCode(t, browser, { ...authorize, code_challenge: pkce.challenge, code_challenge_method: 'S256' });
  const missingVerifier = await postForm(tokenEndpoint, { grant_type: 'authorization_code', code: pkceCode, redirect_uri: CHATGPT_CALLBACK, ...credentials });
  t.equal(missingVerifier.status, 400, 'a challenge that was sent must be answered');
  t.same(missingVerifier.body, { error: 'invalid_request', error_description: 'Missing required parameter: code_verifier' });
});

t.test('n8n with Basic and PKCE', async (t) => {
  const { client, clientSecret } = await createClient({ name: 'n8n', redirectUris: [N8N_CALLBACK], tokenEndpointAuthMethod: 'client_secret_basic' });
  const { browser } = await signInUser(server);
  const pkce = createPkce();
  // n8n's state is base64 JSON, and its scope keeps the commas the user typed.
  const state = Buffer.from(JSON.stringify({ token: 'csrf-token', createdAt: 1733328000000, data: 'encrypted' })).toString('base64');

  const consent = await approveConsent(
    browser,
    authorizationUrl({
      client_id: client.id,
      redirect_uri: N8N_CALLBACK,
      response_type: 'code',
      state,
      scope: 'read:profile,read:teams',
      code_challenge: pkce.challenge,
      code_challenge_method: 'S256',
    }),
  );
  t.match(consent.pageHtml, /name="grant:read:profile"/);
  t.match(consent.pageHtml, /name="grant:read:teams"/);
  t.equal(consent.location.searchParams.get('state'), state);

  const tokens = await postForm(
    tokenEndpoint,
    { code: consent.location.searchParams.get('code') ?? '', grant_type: 'authorization_code', redirect_uri: N8N_CALLBACK, code_verifier: pkce.verifier },
    { authorization: basicAuthorization(client.id, clientSecret!), accept: 'application/json' },
  );
  checkTokenResponse(t, tokens, 'read:profile read:teams');
  t.equal(await callApi('/api/v1/teams/', tokens.body.access_token), 200);
});

t.test('n8n empty scope means the default', async (t) => {
  const { client, clientSecret } = await createClient({
    name: 'n8n',
    redirectUris: [N8N_CALLBACK],
    tokenEndpointAuthMethod: 'client_secret_basic',
    scopes: ['read:profile', 'read:products'],
  });
  const { browser } = await signInUser(server);
  const pkce = createPkce();

  const consent = await approveConsent(
    browser,
    authorizationUrl({
      client_id: client.id,
      redirect_uri: N8N_CALLBACK,
      response_type: 'code',
      state: 'n8n-state',
      scope: '',
      code_challenge: pkce.challenge,
      code_challenge_method: 'S256',
    }),
  );
  t.equal(consent.pageStatus, 200);
  const offered = [...consent.pageHtml.matchAll(/name="grant:([^"]+)"/g)].map((match) => match[1]);
  t.same(offered, ['read:profile', 'read:products'], 'the scopes registered for the client');

  const tokens = await postForm(
    tokenEndpoint,
    { code: consent.location.searchParams.get('code') ?? '', grant_type: 'authorization_code', redirect_uri: N8N_CALLBACK, code_verifier: pkce.verifier, scope: '' },
    { authorization: basicAuthorization(client.id, clientSecret!) },
  );
  checkTokenResponse(t, tokens, 'read:profile read:products');
});

t.test('n8n dynamic registration and flow', async (t) => {
  const metadata = await readResponse(await fetch(`${server.url}/.well-known/oauth-authorization-server`));
  // The body n8n posts when its credential uses dynamic client registration and the server offers S256.
  const registration = await postJson(metadata.body.registration_endpoint, {
    redirect_uris: [N8N_CALLBACK],
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    client_name: 'n8n',
    client_uri: 'https://n8n.io/',
    scope: metadata.body.scopes_supported.join(' '),
  });
  t.equal(registration.status, 201);
  t.type(registration.body.client_id, 'string');
  t.notOk('client_secret' in registration.body, 'a public client gets no secret, not a null one');

  const { browser } = await signInUser(server);
  const pkce = createPkce();
  const code = await obtainCode(t, browser, {
    client_id: registration.body.client_id,
    redirect_uri: N8N_CALLBACK,
    response_type: 'code',
    state: 'n8n-dcr-state',
    scope: metadata.body.scopes_supported.join(' '),
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  });

  const tokens = await postForm(tokenEndpoint, {
    code,
    grant_type: 'authorization_code',
    redirect_uri: N8N_CALLBACK,
    client_id: registration.body.client_id,
    code_verifier: pkce.verifier,
  });
  checkTokenResponse(t, tokens, metadata.body.scopes_supported.join(' '));

  const refreshed = await postForm(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: registration.body.client_id });
  checkTokenResponse(t, refreshed, metadata.body.scopes_supported.join(' '));
});

t.test('Claude-style registration with client_secret_post', async (t) => {
  const resource = `${server.url}/api/v1`;
  const registration = await postJson(`${server.url}/o/register/`, {
    client_name: 'Claude',
    redirect_uris: [CLAUDE_CALLBACK],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    scope: 'read:profile read:teams',
  });
  t.equal(registration.status, 201);
  const { client_id: clientId, client_secret: clientSecret } = registration.body;
  t.match(clientSecret, /^sgs_/);

  const { browser } = await signInUser(server);
  const pkce = createPkce();
  const code = await obtainCode(t, browser, {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: CLAUDE_CALLBACK,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    state: 'claude-state',
    scope: 'read:profile read:teams',
    resource,
  });

  const tokens = await postForm(tokenEndpoint, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: CLAUDE_CALLBACK,
    code_verifier: pkce.verifier,
    client_id: clientId,
    client_secret: clientSecret,
    resource,
  });
  checkTokenResponse(t, tokens, 'read:profile read:teams');
  t.equal(await callApi('/api/v1/me/', tokens.body.access_token), 200);

  const withoutSecret = await postForm(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: clientId, resource });
  t.equal(withoutSecret.status, 401, 'a confidential client must authenticate');
  t.same(withoutSecret.body, { error: 'invalid_client', error_description: 'Client authentication failed' });

  const refreshed = await postForm(tokenEndpoint, {
    grant_type: 'refresh_token',
    refresh_token: tokens.body.refresh_token,
    client_id: clientId,
    client_secret: clientSecret,
    resource,
  });
  checkTokenResponse(t, refreshed, 'read:profile read:teams');
});

t.test('JSON token requests work', async (t) => {
  const { client, clientSecret } = await createClient({ name: 'JSON Poster', redirectUris: [CHATGPT_CALLBACK], tokenEndpointAuthMethod: 'client_secret_post' });
  const { browser } = await signInUser(server);
  const pkce = createPkce();
  const code = await obtainCode(t, browser, {
    response_type: 'code',
    client_id: client.id,
    redirect_uri: CHATGPT_CALLBACK,
    state: 'json-state',
    scope: 'read:profile',
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  });
  const credentials = { client_id: client.id, client_secret: clientSecret! };

  const tokens = await postJson(tokenEndpoint, { grant_type: 'authorization_code', code, redirect_uri: CHATGPT_CALLBACK, code_verifier: pkce.verifier, ...credentials });
  checkTokenResponse(t, tokens, 'read:profile');
  t.equal(await callApi('/api/v1/me/', tokens.body.access_token), 200);

  const refreshed = await postJson(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, ...credentials }, { 'content-type': 'application/json; charset=utf-8' });
  checkTokenResponse(t, refreshed, 'read:profile');

  const nested = await postJson(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: { value: refreshed.body.refresh_token }, ...credentials });
  t.equal(nested.status, 400, 'JSON values must be strings, as form values are');
  t.same(nested.body, { error: 'invalid_request', error_description: 'The parameter refresh_token must be a string' });

  const text = await readResponse(
    await fetch(tokenEndpoint, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ grant_type: 'refresh_token' }) }),
  );
  t.equal(text.status, 400);
  t.same(text.body, { error: 'invalid_request', error_description: 'The Content-Type must be application/x-www-form-urlencoded or application/json' });
});

t.test('public client cannot be exempted from PKCE', async (t) => {
  const exemption = createClient({ name: 'Public App', redirectUris: [CHATGPT_CALLBACK], requirePkce: false });
  await t.rejects(exemption, OAuthError);
  await t.rejects(exemption, { code: 'invalid_client_metadata', description: 'Only a confidential client may be exempted from PKCE' });

  const exemptionWithNone = createClient({ name: 'Public App', redirectUris: [CHATGPT_CALLBACK], tokenEndpointAuthMethod: 'none', requirePkce: false });
  await t.rejects(exemptionWithNone, { code: 'invalid_client_metadata' });
});

t.test('authorization without PKCE is refused', async (t) => {
  const publicClient = await createClient({ name: 'Public App', redirectUris: [CLAUDE_CALLBACK] });
  const confidential = await createClient({ name: 'Secret App', redirectUris: [CLAUDE_CALLBACK], confidential: true });
  const exempt = await createClient({ name: 'Exempt App', redirectUris: [CLAUDE_CALLBACK], confidential: true, requirePkce: false });

  const cases: [string, string, Record<string, string>, string][] = [
    ['public, no challenge', publicClient.client.id, {}, 'code_challenge is required: this server requires PKCE with S256'],
    ['confidential, no challenge', confidential.client.id, {}, 'code_challenge is required: this server requires PKCE with S256'],
    ['public, plain method', publicClient.client.id, { code_challenge: createPkce().verifier, code_challenge_method: 'plain' }, 'code_challenge_method must be S256; plain is not supported'],
    ['public, no method', publicClient.client.id, { code_challenge: createPkce().challenge }, 'code_challenge_method must be S256; plain is not supported'],
    ['exempt, method alone', exempt.client.id, { code_challenge_method: 'S256' }, 'code_challenge is required: this server requires PKCE with S256'],
  ];

  for (const [label, clientId, extra, description] of cases) {
    const response = await fetch(authorizationUrl({ response_type: 'code', client_id: clientId, redirect_uri: CLAUDE_CALLBACK, state: 'pkce-state', scope: 'read:profile', ...extra }), { redirect: 'manual' });
    t.equal(response.status, 303, label);
    const location = new URL(response.headers.get('location') ?? '');
    t.equal(`${location.origin}${location.pathname}`, CLAUDE_CALLBACK, label);
    t.same(Object.fromEntries(location.searchParams), { error: 'invalid_request', error_description: description, state: 'pkce-state', iss: server.url }, label);
  }
});
