import { request as httpRequest } from 'node:http';
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as StreamableHTTPClientTransportV2,
  UnauthorizedError as UnauthorizedErrorV2,
} from '@modelcontextprotocol/client';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import t, { type Test } from 'tap';
import { createUser } from '../src/accounts/users.ts';
import { decodeJwt, postForm } from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { freePort } from './helpers/server.ts';
import { issueTestTokens } from './helpers/tokens.ts';
import {
  MemoryOAuthProvider,
  approveAuthorization,
  startMcpHttpServer,
  startSpeedgateForMcp,
} from './mcp-server-fixture.ts';

// Three processes start here: create-oauth2-app, then Speedgate in this process, then the MCP server.
t.setTimeout(300_000);

const EMAIL = 'grace@example.com';
const PASSWORD = 'correct horse battery';
const TOOL_SCOPES = 'read:profile read:teams read:products';

const mcpPort = await freePort();
const mcpUrl = `http://127.0.0.1:${mcpPort}/mcp`;
const metadataUrl = `http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource/mcp`;

const speedgate = await startSpeedgateForMcp(t, mcpUrl);
const { server } = speedgate;
const newUser = { email: EMAIL, password: PASSWORD, name: 'Grace Hopper' };
await createUser(server.app.speedgate.db, newUser, server.clock.now());
const mcp = await startMcpHttpServer(t, speedgate, mcpPort, mcpUrl);

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-test', version: '1.0.0' } },
};

/** Sends one JSON-RPC message to the MCP endpoint with fetch, as a client without the SDK would. */
async function postMcp(message: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(mcpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(message),
  });
  const text = await response.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the text stays, so a failed assertion shows it.
  }
  return { status: response.status, headers: response.headers, body };
}

/** Sends a POST with a Host or Origin header that fetch would not let a caller set. */
function postWithHeaders(headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(INITIALIZE);
    const sent = httpRequest(
      mcpUrl,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      },
      (response) => {
        response.resume();
        response.once('end', () => resolve(response.statusCode ?? 0));
      },
    );
    sent.once('error', reject);
    sent.end(body);
  });
}

function toolText(result: unknown): string {
  const content = (result as CallToolResult).content[0];
  return content.type === 'text' ? content.text : '';
}

/** Runs the SDK client's first connection until it requests authorization, then approves it in the browser. */
async function signIn(t: Test, provider: MemoryOAuthProvider, browser: BrowserSession, untick: string[] = []) {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  const client = new Client({ name: 'speedgate-test', version: '1.0.0' });
  const failure = await client.connect(transport).then(() => undefined, (error: unknown) => error);
  t.ok(failure instanceof UnauthorizedError, `the first connection requests authorization: ${failure}`);

  const redirect = await approveAuthorization(browser, provider.authorizationUrl!, { untick });
  t.equal(redirect.iss, server.url, 'the redirect names the issuer');
  await transport.finishAuth(redirect.code);
}

/** Connects a new SDK client with the provider's stored tokens. */
async function connect(t: Test, provider: MemoryOAuthProvider): Promise<Client> {
  const client = new Client({ name: 'speedgate-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  t.teardown(() => client.close());
  return client;
}

t.test('missing token gets a challenge', async (t) => {
  const response = await postMcp(INITIALIZE);
  t.equal(response.status, 401);
  t.equal(response.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}"`);
  t.same(response.body, { error: 'invalid_token', error_description: 'An access token is required' });
});

t.test('invalid token gets invalid_token', async (t) => {
  const response = await postMcp(INITIALIZE, { authorization: 'Bearer not-a-jwt' });
  t.equal(response.status, 401);
  t.equal(
    response.headers.get('www-authenticate'),
    'Bearer error="invalid_token", error_description="The access token is invalid", ' +
      `resource_metadata="${metadataUrl}"`,
  );
  t.same(response.body, { error: 'invalid_token', error_description: 'The access token is invalid' });
});

t.test('API token is rejected by audience', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });
  t.equal(decodeJwt(issued.accessToken).payload.aud, `${server.url}/api/v1`);

  const response = await postMcp(INITIALIZE, { authorization: `Bearer ${issued.accessToken}` });
  t.equal(response.status, 401);
  t.match(response.headers.get('www-authenticate'), /error="invalid_token"/);
});

t.test('malformed Authorization header gets 400', async (t) => {
  const response = await postMcp(INITIALIZE, { authorization: 'Basic dXNlcjpwYXNz' });
  t.equal(response.status, 400);
  t.same(response.body, {
    error: 'invalid_request',
    error_description: 'The Authorization header must be "Bearer <token>"',
  });
});

t.test('protected resource metadata', async (t) => {
  const expected = {
    resource: mcpUrl,
    authorization_servers: [server.url],
    scopes_supported: TOOL_SCOPES.split(' '),
    bearer_methods_supported: ['header'],
    resource_name: 'Speedgate MCP server',
  };
  for (const url of [metadataUrl, `http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource`]) {
    const response = await fetch(url);
    t.equal(response.status, 200, url);
    t.same(await response.json(), expected, url);
  }
});

t.test('foreign Host or Origin is rejected', async (t) => {
  t.equal(await postWithHeaders({ host: 'evil.example.com' }), 403, 'foreign Host');
  t.equal(await postWithHeaders({ host: `evil.example.com:${mcpPort}` }), 403, 'foreign Host with our port');
  t.equal(await postWithHeaders({ origin: 'http://evil.example.com' }), 403, 'foreign Origin');
  t.equal(await postWithHeaders({}), 401, 'our own Host passes on to authentication');
});

t.test('SDK client calls tools after sign-in', async (t) => {
  const provider = new MemoryOAuthProvider();
  const browser = new BrowserSession(server.url);
  t.equal((await browser.logIn(EMAIL, PASSWORD)).status, 303);
  await signIn(t, provider, browser);

  const requested = provider.authorizationUrl!;
  t.equal(requested.origin + requested.pathname, `${server.url}/o/authorize/`);
  t.equal(requested.searchParams.get('resource'), mcpUrl);
  t.equal(requested.searchParams.get('scope'), TOOL_SCOPES);
  t.equal(requested.searchParams.get('code_challenge_method'), 'S256');
  t.ok(provider.client?.client_id, 'the client registered by DCR');
  t.equal(decodeJwt(provider.savedTokens!.access_token).payload.aud, mcpUrl);

  const client = await connect(t, provider);
  const { tools } = await client.listTools();
  t.same(tools.map((tool) => tool.name), ['get_profile', 'list_teams', 'list_products']);

  const profile = await client.callTool({ name: 'get_profile', arguments: {} });
  t.notOk(profile.isError, 'get_profile succeeds');
  t.equal(JSON.parse(toolText(profile)).email, EMAIL);

  // Every new user owns a team of their own.
  const teams = await client.callTool({ name: 'list_teams', arguments: {} });
  t.equal(JSON.parse(toolText(teams)).teams[0].members[0].email, EMAIL);
  const products = await client.callTool({ name: 'list_products', arguments: {} });
  t.ok(Array.isArray(JSON.parse(toolText(products)).products));
  t.notMatch(mcp.stderr(), provider.savedTokens!.access_token, 'the server logs no token');
});

t.test('missing scope gets 403 insufficient_scope', async (t) => {
  const provider = new MemoryOAuthProvider();
  const browser = new BrowserSession(server.url);
  await browser.logIn(EMAIL, PASSWORD);
  await signIn(t, provider, browser, ['read:products']);
  const token = provider.savedTokens!.access_token;
  t.equal(decodeJwt(token).payload.scope, 'read:profile read:teams');

  const call = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'list_products', arguments: {} } };
  const response = await postMcp(call, { authorization: `Bearer ${token}` });
  t.equal(response.status, 403);
  t.equal(
    response.headers.get('www-authenticate'),
    'Bearer error="insufficient_scope", error_description="This tool requires the scope read:products", ' +
      `scope="read:profile read:teams read:products", resource_metadata="${metadataUrl}"`,
  );

  const client = await connect(t, provider);
  const profile = await client.callTool({ name: 'get_profile', arguments: {} });
  t.equal(JSON.parse(toolText(profile)).email, EMAIL, 'tools within the granted scope still work');

  // SDK 1.x refreshes the token, which cannot widen its scope, so the retry gets the same 403.
  const failure = await client.callTool({ name: 'list_products', arguments: {} }).then(
    () => undefined,
    (error: unknown) => error,
  );
  t.match(String(failure), /Server returned 403 after trying upscoping/);
});

// Version 1 of the SDK's client handles a 403 insufficient_scope with a refresh, which cannot widen
// the scope, and then gives up. Version 2 runs a new authorization request for the wider scope.
t.test('SDK v2 client steps up scope', async (t) => {
  const provider = new MemoryOAuthProvider();
  const browser = new BrowserSession(server.url);
  await browser.logIn(EMAIL, PASSWORD);

  const first = new StreamableHTTPClientTransportV2(new URL(mcpUrl), { authProvider: provider });
  const failure = await new ClientV2({ name: 'speedgate-test', version: '2.0.0' }).connect(first).then(
    () => undefined,
    (error: unknown) => error,
  );
  t.ok(failure instanceof UnauthorizedErrorV2, `the first connection requests authorization: ${failure}`);
  const granted = await approveAuthorization(browser, provider.authorizationUrl!, { untick: ['read:products'] });
  await first.finishAuth(new URLSearchParams(granted));

  const transport = new StreamableHTTPClientTransportV2(new URL(mcpUrl), { authProvider: provider });
  const client = new ClientV2({ name: 'speedgate-test', version: '2.0.0' });
  await client.connect(transport);
  t.teardown(() => client.close());
  provider.authorizationUrl = undefined;

  const denied = await client.callTool({ name: 'list_products', arguments: {} }).then(
    () => undefined,
    (error: unknown) => error,
  );
  t.ok(denied instanceof UnauthorizedErrorV2, `the call requests a wider authorization: ${denied}`);
  // The step-up set the URL again inside callTool, which TypeScript's narrowing cannot see.
  const stepUpUrl = provider.authorizationUrl as URL | undefined;
  t.equal(stepUpUrl?.searchParams.get('scope'), TOOL_SCOPES);

  const stepUp = await approveAuthorization(browser, stepUpUrl!);
  await transport.finishAuth(new URLSearchParams(stepUp));
  t.equal(decodeJwt(provider.savedTokens!.access_token).payload.scope, TOOL_SCOPES);

  const products = await client.callTool({ name: 'list_products', arguments: {} });
  t.notOk(products.isError, 'list_products succeeds after the step-up');
  t.ok(Array.isArray(JSON.parse(toolText(products)).products));
});

t.test('revoked authorization stops the tools', async (t) => {
  const provider = new MemoryOAuthProvider();
  const browser = new BrowserSession(server.url);
  await browser.logIn(EMAIL, PASSWORD);
  await signIn(t, provider, browser);
  const client = await connect(t, provider);
  t.notOk((await client.callTool({ name: 'get_profile', arguments: {} })).isError);

  const revoked = await postForm(`${server.url}/o/revoke_token/`, {
    token: provider.savedTokens!.refresh_token!,
    client_id: provider.client!.client_id,
  });
  t.equal(revoked.status, 200);

  // The exchanged API token is cached, so the first call after revocation learns of it from the API.
  const first = await client.callTool({ name: 'get_profile', arguments: {} });
  t.equal(first.isError, true);
  const revokedText = /^Speedgate rejected the access token for get_profile: The access token has been revoked\./;
  t.match(toolText(first), revokedText);

  const call = { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'get_profile', arguments: {} } };
  const second = await postMcp(call, { authorization: `Bearer ${provider.savedTokens!.access_token}` });
  t.equal(second.status, 401);
  const challenge = /^Bearer error="invalid_token", error_description="The subject_token has been revoked"/;
  t.match(second.headers.get('www-authenticate'), challenge);
});

t.test('GET gets 405', async (t) => {
  const provider = new MemoryOAuthProvider();
  const browser = new BrowserSession(server.url);
  await browser.logIn(EMAIL, PASSWORD);
  await signIn(t, provider, browser);

  const response = await fetch(mcpUrl, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${provider.savedTokens!.access_token}` },
  });
  t.equal(response.status, 405);
  t.equal(response.headers.get('allow'), 'POST');
});
