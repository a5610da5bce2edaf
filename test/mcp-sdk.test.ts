import { randomBytes } from 'node:crypto';
import * as sdkV2 from '@modelcontextprotocol/client';
import {
  auth,
  buildDiscoveryUrls,
  discoverAuthorizationServerMetadata,
  discoverOAuthMetadata,
  discoverOAuthProtectedResourceMetadata,
  discoverOAuthServerInfo,
  exchangeAuthorization,
  extractWWWAuthenticateParams,
  refreshAuthorization,
  registerClient,
  startAuthorization,
  type OAuthClientProvider,
  type OAuthDiscoveryState,
} from '@modelcontextprotocol/sdk/client/auth.js';
import { InvalidGrantError, InvalidTargetError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import type { AuthorizationServerMetadata, OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import t, { type Test } from 'tap';
import { approveConsent, signInUser } from './helpers/code-flow.ts';
import { startServer, type TestServer } from './helpers/server.ts';

/** Where a desktop MCP client listens for the authorization response. */
const REDIRECT_URI = 'http://127.0.0.1:8976/oauth/callback';
/** A second resource server this authorization server issues tokens for, as an MCP server would be. */
const MCP_RESOURCE = 'https://mcp.example.com/mcp';
const ALL_SCOPES = 'read:profile write:profile read:teams write:teams read:products';

const CLIENT_METADATA: OAuthClientMetadata = {
  client_name: 'SDK Test Client',
  redirect_uris: [REDIRECT_URI],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
};

/**
 * An MCP client's OAuth state, kept in memory where a desktop client would use
 * its keychain. `redirectToAuthorization` records the URL instead of opening a
 * browser, so the test can approve it as the user.
 */
class MemoryProvider implements OAuthClientProvider {
  readonly redirectUrl = REDIRECT_URI;
  readonly clientMetadata = CLIENT_METADATA;
  information: OAuthClientInformationMixed | undefined;
  stored: OAuthTokens | undefined;
  verifier: string | undefined;
  discovery: OAuthDiscoveryState | undefined;
  authorizationUrl: URL | undefined;
  lastState = '';
  /** Every client_id this provider was given, so a test can count registrations. */
  readonly clientIds = new Set<string>();

  state(): string {
    this.lastState = randomBytes(12).toString('base64url');
    return this.lastState;
  }

  clientInformation() {
    return this.information;
  }

  saveClientInformation(information: OAuthClientInformationMixed): void {
    this.information = information;
    this.clientIds.add(information.client_id);
  }

  tokens() {
    return this.stored;
  }

  saveTokens(tokens: OAuthTokens): void {
    this.stored = tokens;
  }

  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
  }

  saveCodeVerifier(verifier: string): void {
    this.verifier = verifier;
  }

  codeVerifier(): string {
    if (this.verifier === undefined) throw new Error('no code verifier was saved');
    return this.verifier;
  }

  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.discovery = state;
  }

  discoveryState() {
    return this.discovery;
  }

  invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): void {
    if (scope === 'all' || scope === 'tokens') this.stored = undefined;
    if (scope === 'all' || scope === 'client') this.information = undefined;
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
    if (scope === 'all' || scope === 'discovery') this.discovery = undefined;
  }
}

interface RecordedExchange {
  url: string;
  status: number;
  body: string;
}

/** Returns a fetch that records every URL the SDK requests, with the status and body of each response. */
function recordingFetch() {
  const exchanges: RecordedExchange[] = [];
  const fetchFn = async (url: string | URL, init?: RequestInit): Promise<Response> => {
    const response = await fetch(url, init);
    exchanges.push({ url: String(url), status: response.status, body: await response.clone().text() });
    return response;
  };
  return { fetchFn, exchanges };
}

function bearer(token: string | undefined): RequestInit {
  return { headers: { authorization: `Bearer ${token ?? ''}` } };
}

let server: TestServer;
let apiUrl: string;
let metadataUrl: string;

t.before(async () => {
  server = await startServer(t, { env: { RESOURCES: MCP_RESOURCE } });
  apiUrl = `${server.url}/api/v1/me/`;
  metadataUrl = `${server.url}/.well-known/oauth-protected-resource/api/v1`;
});

/** Approves `url` in the user's browser and returns the authorization code and `iss` from the redirect back. */
async function approve(t: Test, browser: Awaited<ReturnType<typeof signInUser>>['browser'], url: URL | undefined, state: string, untick: string[] = []) {
  if (url === undefined) throw new Error('the SDK did not redirect to the authorization endpoint');
  const consent = await approveConsent(browser, url, untick);
  t.equal(consent.pageStatus, 200, 'the consent page is shown');
  t.equal(consent.status, 303);
  t.equal(`${consent.location.origin}${consent.location.pathname}`, REDIRECT_URI);
  t.equal(consent.location.searchParams.get('state'), state);
  t.equal(consent.location.searchParams.get('iss'), server.url);
  const code = consent.location.searchParams.get('code');
  if (code === null) throw new Error(`no code in ${consent.location.href}`);
  return { code, iss: consent.location.searchParams.get('iss') ?? undefined };
}

t.test('SDK v1 authorizes from a 401', async (t) => {
  const { user, browser } = await signInUser(server);
  const provider = new MemoryProvider();

  const challenge = await fetch(apiUrl);
  t.equal(challenge.status, 401);
  const { resourceMetadataUrl } = extractWWWAuthenticateParams(challenge);
  t.equal(resourceMetadataUrl?.href, metadataUrl);

  const started = await auth(provider, { serverUrl: apiUrl, resourceMetadataUrl });
  t.equal(started, 'REDIRECT');
  t.equal(provider.clientIds.size, 1, 'the SDK registered one client');
  const authorization = provider.authorizationUrl!;
  t.equal(`${authorization.origin}${authorization.pathname}`, `${server.url}/o/authorize/`);
  t.same(Object.fromEntries(authorization.searchParams), {
    response_type: 'code',
    client_id: provider.information?.client_id,
    code_challenge: authorization.searchParams.get('code_challenge'),
    code_challenge_method: 'S256',
    redirect_uri: REDIRECT_URI,
    state: provider.lastState,
    scope: ALL_SCOPES,
    resource: `${server.url}/api/v1`,
  });

  const client = await server.app.speedgate.db.selectFrom('clients').selectAll().where('id', '=', provider.information!.client_id).executeTakeFirstOrThrow();
  t.equal(client.registration_type, 'dynamic');
  t.equal(client.token_endpoint_auth_method, 'none');

  // The user grants everything except read:teams, so the step-up below has something to ask for.
  const { code } = await approve(t, browser, authorization, provider.lastState, ['read:teams']);
  t.equal(await auth(provider, { serverUrl: apiUrl, authorizationCode: code, resourceMetadataUrl }), 'AUTHORIZED');
  t.equal(provider.stored?.scope, 'read:profile write:profile write:teams read:products');

  const me = await fetch(apiUrl, bearer(provider.stored?.access_token));
  t.equal(me.status, 200);
  t.equal(((await me.json()) as { id: string }).id, user.id);

  const firstTokens = provider.stored!;
  t.equal(await auth(provider, { serverUrl: apiUrl, resourceMetadataUrl }), 'AUTHORIZED', 'a stored refresh token is used');
  t.not(provider.stored?.access_token, firstTokens.access_token);
  t.not(provider.stored?.refresh_token, firstTokens.refresh_token, 'the refresh token rotated');
  t.equal((await fetch(apiUrl, bearer(provider.stored?.access_token))).status, 200);

  const forbidden = await fetch(`${server.url}/api/v1/teams/`, bearer(provider.stored?.access_token));
  t.equal(forbidden.status, 403);
  const stepUp = extractWWWAuthenticateParams(forbidden);
  t.equal(stepUp.error, 'insufficient_scope');
  t.equal(stepUp.scope, 'read:teams');
  t.equal(stepUp.resourceMetadataUrl?.href, metadataUrl);

  // A refresh cannot widen scope (RFC 6749 section 6), so the client drops its tokens and requests authorization again.
  provider.invalidateCredentials('tokens');
  t.equal(await auth(provider, { serverUrl: apiUrl, scope: stepUp.scope, resourceMetadataUrl: stepUp.resourceMetadataUrl }), 'REDIRECT');
  t.equal(provider.authorizationUrl?.searchParams.get('scope'), 'read:teams');
  const stepped = await approve(t, browser, provider.authorizationUrl, provider.lastState);
  t.equal(await auth(provider, { serverUrl: apiUrl, authorizationCode: stepped.code, resourceMetadataUrl }), 'AUTHORIZED');
  t.equal(provider.stored?.scope, 'read:teams');

  const teams = await fetch(`${server.url}/api/v1/teams/`, bearer(provider.stored?.access_token));
  t.equal(teams.status, 200);
  t.equal(provider.clientIds.size, 1, 'the step-up reused the registration');
});

t.test('SDK v1 discovers metadata at every URL', async (t) => {
  const resourceUrls: [string, string[]][] = [
    [apiUrl, [`${server.url}/.well-known/oauth-protected-resource/api/v1/me`]],
    [`${server.url}/api/v1`, [`${server.url}/.well-known/oauth-protected-resource/api/v1`]],
    [`${server.url}/`, [`${server.url}/.well-known/oauth-protected-resource`]],
    // An unknown path falls back to the root document after a 404.
    [`${server.url}/mcp`, [`${server.url}/.well-known/oauth-protected-resource/mcp`, `${server.url}/.well-known/oauth-protected-resource`]],
  ];
  for (const [serverUrl, requested] of resourceUrls) {
    const { fetchFn, exchanges } = recordingFetch();
    const metadata = await discoverOAuthProtectedResourceMetadata(serverUrl, undefined, fetchFn);
    t.equal(metadata.resource, `${server.url}/api/v1`, serverUrl);
    t.same(metadata.authorization_servers, [server.url], serverUrl);
    t.same(exchanges.map((exchange) => exchange.url), requested, serverUrl);
  }

  const named = await discoverOAuthProtectedResourceMetadata(apiUrl, { resourceMetadataUrl: metadataUrl });
  t.equal(named.resource, `${server.url}/api/v1`);

  for (const issuer of [server.url, `${server.url}/`]) {
    const { fetchFn, exchanges } = recordingFetch();
    const metadata = await discoverAuthorizationServerMetadata(issuer, { fetchFn });
    t.equal(metadata?.issuer, server.url, issuer);
    t.same(exchanges.map((exchange) => [exchange.url, exchange.status]), [[`${server.url}/.well-known/oauth-authorization-server`, 200]], issuer);
  }

  const legacy = await discoverOAuthMetadata(server.url);
  t.equal(legacy?.registration_endpoint, `${server.url}/o/register/`);

  for (const { url, type } of buildDiscoveryUrls(server.url)) {
    const response = await fetch(url);
    const body = (await response.json()) as Record<string, unknown>;
    if (type === 'oauth') {
      t.equal(response.status, 200, url.href);
      t.equal(body.issuer, server.url);
    } else {
      t.equal(response.status, 404, url.href);
      t.same(body, { error: 'invalid_request', error_description: `No route for GET ${url.pathname}` }, url.href);
    }
  }

  const info = await discoverOAuthServerInfo(apiUrl);
  t.equal(info.authorizationServerUrl, server.url);
  t.equal(info.authorizationServerMetadata?.token_endpoint, `${server.url}/o/token/`);
  t.equal(info.resourceMetadata?.resource, `${server.url}/api/v1`);
});

t.test('SDK v1 registers public and confidential clients', async (t) => {
  const metadata = await discoverAuthorizationServerMetadata(server.url);

  const publicClient = await registerClient(server.url, { metadata, clientMetadata: CLIENT_METADATA, scope: 'read:profile' });
  t.type(publicClient.client_id, 'string');
  t.equal(publicClient.client_secret, undefined);
  t.equal(publicClient.token_endpoint_auth_method, 'none');
  t.equal(publicClient.scope, 'read:profile');
  t.same(publicClient.redirect_uris, [REDIRECT_URI]);

  const confidential = await registerClient(server.url, {
    metadata,
    clientMetadata: { ...CLIENT_METADATA, token_endpoint_auth_method: 'client_secret_post' },
  });
  t.match(confidential.client_secret, /^sgs_/);
  t.equal(confidential.client_secret_expires_at, 0);
  t.equal(confidential.scope, ALL_SCOPES);
});

/** Registers a public client and runs the browser half of a flow, returning what the token request needs. */
async function authorizeWithSdk(t: Test, metadata: AuthorizationServerMetadata | undefined, resource: string) {
  const { browser } = await signInUser(server);
  const clientInformation = await registerClient(server.url, { metadata, clientMetadata: CLIENT_METADATA });
  const state = randomBytes(12).toString('base64url');
  const { authorizationUrl, codeVerifier } = await startAuthorization(server.url, {
    metadata,
    clientInformation,
    redirectUrl: REDIRECT_URI,
    scope: 'read:profile',
    state,
    resource: new URL(resource),
  });
  const { code } = await approve(t, browser, authorizationUrl, state);
  return { clientInformation, codeVerifier, code };
}

t.test('SDK v1 exchange with a wrong verifier fails', async (t) => {
  const metadata = await discoverAuthorizationServerMetadata(server.url);
  const { clientInformation, code } = await authorizeWithSdk(t, metadata, `${server.url}/api/v1`);
  const { fetchFn, exchanges } = recordingFetch();

  const exchange = exchangeAuthorization(server.url, {
    metadata,
    clientInformation,
    authorizationCode: code,
    codeVerifier: randomBytes(32).toString('base64url'),
    redirectUri: REDIRECT_URI,
    fetchFn,
  });
  await t.rejects(exchange, InvalidGrantError);
  await t.rejects(exchange, { message: 'The code_verifier does not match the code_challenge' });
  t.equal(exchanges[0].status, 400);
  t.same(JSON.parse(exchanges[0].body), { error: 'invalid_grant', error_description: 'The code_verifier does not match the code_challenge' });
});

t.test('SDK v1 rotated refresh token fails later', async (t) => {
  const metadata = await discoverAuthorizationServerMetadata(server.url);
  const resource = new URL(`${server.url}/api/v1`);
  const { clientInformation, codeVerifier, code } = await authorizeWithSdk(t, metadata, resource.href);
  const first = await exchangeAuthorization(server.url, { metadata, clientInformation, authorizationCode: code, codeVerifier, redirectUri: REDIRECT_URI, resource });

  const second = await refreshAuthorization(server.url, { metadata, clientInformation, refreshToken: first.refresh_token!, resource });
  t.not(second.refresh_token, first.refresh_token);

  const retry = await refreshAuthorization(server.url, { metadata, clientInformation, refreshToken: first.refresh_token!, resource });
  t.equal(retry.refresh_token, second.refresh_token, 'a retry inside the grace window gets the same answer');

  server.clock.advance(61);
  const { fetchFn, exchanges } = recordingFetch();
  const reuse = refreshAuthorization(server.url, { metadata, clientInformation, refreshToken: first.refresh_token!, resource, fetchFn });
  await t.rejects(reuse, InvalidGrantError);
  t.equal(exchanges[0].status, 400);
  t.same(JSON.parse(exchanges[0].body), { error: 'invalid_grant', error_description: 'The refresh_token is invalid, expired or revoked' });

  const successor = refreshAuthorization(server.url, { metadata, clientInformation, refreshToken: second.refresh_token!, resource });
  await t.rejects(successor, InvalidGrantError, 'the reuse revoked the whole family');
  t.equal((await fetch(apiUrl, bearer(second.access_token))).status, 401, 'and its access tokens');
});

t.test('SDK v1 resource mismatch gets invalid_target', async (t) => {
  const metadata = await discoverAuthorizationServerMetadata(server.url);
  const { clientInformation, codeVerifier, code } = await authorizeWithSdk(t, metadata, `${server.url}/api/v1`);

  const cases: [string, string][] = [
    [MCP_RESOURCE, `The resource ${MCP_RESOURCE} was not part of this authorization`],
    ['https://elsewhere.example/api', 'The resource https://elsewhere.example/api is not served by this authorization server'],
  ];
  for (const [resource, description] of cases) {
    const { fetchFn, exchanges } = recordingFetch();
    const exchange = exchangeAuthorization(server.url, {
      metadata,
      clientInformation,
      authorizationCode: code,
      codeVerifier,
      redirectUri: REDIRECT_URI,
      resource: new URL(resource),
      fetchFn,
    });
    await t.rejects(exchange, InvalidTargetError, resource);
    t.equal(exchanges[0].status, 400, resource);
    t.same(JSON.parse(exchanges[0].body), { error: 'invalid_target', error_description: description }, resource);
  }
});

t.test('token for the MCP resource fails at the API', async (t) => {
  const metadata = await discoverAuthorizationServerMetadata(server.url);
  const resource = new URL(MCP_RESOURCE);
  const { clientInformation, codeVerifier, code } = await authorizeWithSdk(t, metadata, MCP_RESOURCE);
  const tokens = await exchangeAuthorization(server.url, { metadata, clientInformation, authorizationCode: code, codeVerifier, redirectUri: REDIRECT_URI, resource });

  const payload = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString('utf8'));
  t.equal(payload.aud, MCP_RESOURCE, 'the audience is the requested resource');
  t.equal((await fetch(apiUrl, bearer(tokens.access_token))).status, 401, 'the demo API rejects another audience');
});

t.test('unknown resource is refused at authorization', async (t) => {
  const metadata = await discoverAuthorizationServerMetadata(server.url);
  const clientInformation = await registerClient(server.url, { metadata, clientMetadata: CLIENT_METADATA });
  const { authorizationUrl } = await startAuthorization(server.url, {
    metadata,
    clientInformation,
    redirectUrl: REDIRECT_URI,
    scope: 'read:profile',
    state: 'state-7',
    resource: new URL('https://elsewhere.example/api'),
  });

  const response = await fetch(authorizationUrl, { redirect: 'manual' });
  t.equal(response.status, 303);
  const location = new URL(response.headers.get('location') ?? '');
  t.same(Object.fromEntries(location.searchParams), {
    error: 'invalid_target',
    error_description: 'The resource https://elsewhere.example/api is not served by this authorization server',
    state: 'state-7',
    iss: server.url,
  });
});

/** The v1 provider with the v2 interface's stricter client information type. */
class MemoryProviderV2 extends MemoryProvider implements sdkV2.OAuthClientProvider {
  override clientInformation(): sdkV2.StoredOAuthClientInformation | undefined {
    return this.information as sdkV2.StoredOAuthClientInformation | undefined;
  }

  override tokens(): sdkV2.StoredOAuthTokens | undefined {
    return this.stored as sdkV2.StoredOAuthTokens | undefined;
  }
}

t.test('SDK v2 authorizes and steps up', async (t) => {
  const { browser } = await signInUser(server);
  const provider = new MemoryProviderV2();

  const challenge = await fetch(apiUrl);
  const { resourceMetadataUrl } = sdkV2.extractWWWAuthenticateParams(challenge);
  t.equal(resourceMetadataUrl?.href, metadataUrl);

  t.equal(await sdkV2.auth(provider, { serverUrl: apiUrl, resourceMetadataUrl }), 'REDIRECT');
  t.equal(provider.authorizationUrl?.searchParams.get('resource'), `${server.url}/api/v1`);
  t.equal(provider.authorizationUrl?.searchParams.get('code_challenge_method'), 'S256');
  const first = await approve(t, browser, provider.authorizationUrl, provider.lastState, ['read:teams']);

  // v2 checks the RFC 9207 iss parameter against the metadata before it redeems the code.
  t.equal(await sdkV2.auth(provider, { serverUrl: apiUrl, authorizationCode: first.code, iss: first.iss, resourceMetadataUrl }), 'AUTHORIZED');
  t.equal((await fetch(apiUrl, bearer(provider.stored?.access_token))).status, 200);

  const refreshedFrom = provider.stored?.refresh_token;
  t.equal(await sdkV2.auth(provider, { serverUrl: apiUrl, resourceMetadataUrl }), 'AUTHORIZED');
  t.not(provider.stored?.refresh_token, refreshedFrom, 'the refresh token rotated');

  const forbidden = await fetch(`${server.url}/api/v1/teams/`, bearer(provider.stored?.access_token));
  t.equal(forbidden.status, 403);
  const stepUp = sdkV2.extractWWWAuthenticateParams(forbidden);
  const requestedScope = sdkV2.computeScopeUnion(provider.stored?.scope, stepUp.scope);
  t.ok(sdkV2.isStrictScopeSuperset(requestedScope, provider.stored?.scope), 'a refresh cannot cover the new scope');

  t.equal(await sdkV2.auth(provider, { serverUrl: apiUrl, scope: requestedScope, resourceMetadataUrl, forceReauthorization: true }), 'REDIRECT');
  const stepped = await approve(t, browser, provider.authorizationUrl, provider.lastState);
  t.equal(await sdkV2.auth(provider, { serverUrl: apiUrl, authorizationCode: stepped.code, iss: stepped.iss, resourceMetadataUrl }), 'AUTHORIZED');
  t.equal(provider.stored?.scope, ALL_SCOPES, 'the union of the old and the new scope');
  t.equal((await fetch(`${server.url}/api/v1/teams/`, bearer(provider.stored?.access_token))).status, 200);
  t.equal((await fetch(apiUrl, bearer(provider.stored?.access_token))).status, 200);
  t.equal(provider.clientIds.size, 1, 'one registration for the whole session');
});

t.test('SDK v2 rejects a forged iss', async (t) => {
  const { browser } = await signInUser(server);
  const provider = new MemoryProviderV2();

  t.equal(await sdkV2.auth(provider, { serverUrl: apiUrl }), 'REDIRECT');
  const { code } = await approve(t, browser, provider.authorizationUrl, provider.lastState);

  const redeemed = sdkV2.auth(provider, { serverUrl: apiUrl, authorizationCode: code, iss: 'https://attacker.example' });
  await t.rejects(redeemed, sdkV2.IssuerMismatchError);
  const error = (await redeemed.catch((caught: unknown) => caught)) as InstanceType<typeof sdkV2.IssuerMismatchError>;
  t.equal(error.kind, 'authorization_response');
  t.equal(error.expected, server.url);
  t.equal(error.received, 'https://attacker.example');
  t.equal(provider.stored, undefined, 'no tokens were stored');

  const honest = await sdkV2.auth(provider, { serverUrl: apiUrl, authorizationCode: code, iss: server.url });
  t.equal(honest, 'AUTHORIZED', 'the code was not spent by the rejected callback');
});
