import t from 'tap';
import * as oauth from 'oauth4webapi';
import { createUser } from '../src/accounts/users.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { ScopeRegistry } from '../src/oauth/scopes.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer, type TestServer } from './helpers/server.ts';

const REDIRECT_URI = 'https://client.example/callback';
const insecure = { [oauth.allowInsecureRequests]: true };

async function discover(server: TestServer): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(server.url);
  const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure });
  return oauth.processDiscoveryResponse(issuer, response);
}

/** Runs the browser half of the flow: authorize, consent, and the redirect back with a code. */
async function authorize(server: TestServer, as: oauth.AuthorizationServer, browser: BrowserSession, clientId: string, verifier: string) {
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint!);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    scope: 'read:profile read:teams',
    state,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  }).toString();

  const consent = await browser.page(url.pathname + url.search);
  const fields: Record<string, string> = { csrf_token: consent.csrfToken, action: 'approve' };
  for (const match of consent.html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields[match[1]] = match[2].replace(/&amp;/g, '&').replace(/&#39;/g, "'").replace(/&quot;/g, '"');
  }
  fields['grant:read:profile'] = 'on';
  const approved = await browser.post('/o/authorize/', fields);
  return { location: new URL(approved.headers.get('location') ?? ''), state, status: approved.status, consentHtml: consent.html };
}

for (const confidential of [false, true]) {
  t.test(`authorization code flow, ${confidential ? 'confidential' : 'public'} client`, async (t) => {
    const server = await startServer(t);
    const { db } = server.app.speedgate;
    await createUser(db, { email: 'ada@example.com', password: 'correct horse battery' }, new Date());
    const { client, clientSecret } = await registerClient(
      db,
      new ScopeRegistry(),
      { name: 'Example Connector', grantTypes: ['authorization_code', 'refresh_token'], redirectUris: [REDIRECT_URI], confidential, registrationType: 'operator' },
      new Date(),
    );

    const as = await discover(server);
    const oauthClient: oauth.Client = { client_id: client.id };
    const auth = confidential ? oauth.ClientSecretBasic(clientSecret!) : oauth.None();

    const browser = new BrowserSession(server.url);
    await browser.logIn('ada@example.com', 'correct horse battery');
    const verifier = oauth.generateRandomCodeVerifier();
    const { location, state, status, consentHtml } = await authorize(server, as, browser, client.id, verifier);
    t.equal(status, 303);
    t.match(consentHtml, /Example Connector/);
    t.match(consentHtml, /client\.example/);
    t.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
    t.equal(location.searchParams.get('iss'), server.url);

    const callback = oauth.validateAuthResponse(as, oauthClient, location, state);
    const tokenResponse = await oauth.authorizationCodeGrantRequest(as, oauthClient, auth, callback, REDIRECT_URI, verifier, insecure);
    const tokens = await oauth.processAuthorizationCodeResponse(as, oauthClient, tokenResponse);
    t.equal(tokens.scope, 'read:profile', 'only the ticked scope is granted');

    const me = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    t.equal(me.status, 200);

    const refreshed = await oauth.processRefreshTokenResponse(
      as,
      oauthClient,
      await oauth.refreshTokenGrantRequest(as, oauthClient, auth, tokens.refresh_token!, insecure),
    );
    t.not(refreshed.refresh_token, tokens.refresh_token);

    await oauth.processRevocationResponse(await oauth.revocationRequest(as, oauthClient, auth, refreshed.refresh_token!, insecure));
    const afterRevoke = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${refreshed.access_token}` } });
    t.equal(afterRevoke.status, 401, 'revoking the refresh token stops the access token');
  });
}
