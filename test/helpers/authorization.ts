import { createHash, randomBytes } from 'node:crypto';
import { createUser } from '../../src/accounts/users.ts';
import type { User } from '../../src/db/schema.ts';
import { registerClient, type ClientRegistration, type RegisteredClient } from '../../src/oauth/clients.ts';
import { BrowserSession } from './browser-session.ts';
import type { TestServer } from './server.ts';

/** Password of every user that `createSignedInUser` creates. */
export const PASSWORD = 'correct horse battery';

export const REDIRECT_URI = 'https://client.example/callback';

export interface HttpResult {
  status: number;
  headers: Headers;
  /** The parsed JSON body, or the raw text when the body is not JSON. */
  body: any;
}

export interface Pkce {
  verifier: string;
  challenge: string;
}

/** Creates a fresh RFC 7636 verifier and its S256 challenge. */
export function createPkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

let userCount = 0;

/** Creates a user and a browser session signed in as that user. */
export async function createSignedInUser(server: TestServer): Promise<{ user: User; browser: BrowserSession }> {
  userCount += 1;
  const email = `code-user${userCount}-${randomBytes(4).toString('hex')}@example.com`;
  const user = await createUser(server.app.speedgate.db, { email, password: PASSWORD }, server.clock.now());

  const browser = new BrowserSession(server.url);
  const login = await browser.logIn(email, PASSWORD);
  if (login.status !== 303) throw new Error(`login as ${email} failed with ${login.status}`);
  return { user, browser };
}

/** Registers an operator client for the authorization code grant with refresh tokens. */
export async function registerCodeClient(
  server: TestServer,
  registration: Partial<ClientRegistration> = {},
): Promise<RegisteredClient> {
  const { db, scopes } = server.app.speedgate;
  return registerClient(
    db,
    scopes,
    {
      name: 'Example Connector',
      grantTypes: ['authorization_code', 'refresh_token'],
      redirectUris: [REDIRECT_URI],
      registrationType: 'operator',
      ...registration,
    },
    server.clock.now(),
  );
}

/** Returns `/o/authorize/?…` with the given parameters. */
export function authorizePath(parameters: Record<string, string>): string {
  return `/o/authorize/?${new URLSearchParams(parameters).toString()}`;
}

/** Builds a complete, valid authorization request for `clientId`, with `extra` replacing any parameter. */
export function authorizationParameters(
  clientId: string,
  pkce: Pkce,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    scope: 'read:profile read:teams',
    state: randomBytes(12).toString('base64url'),
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    ...extra,
  };
}

function decodeEntities(value: string): string {
  return value
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

/** Reads the hidden inputs of a page's forms, as a browser would submit them. */
export function readHiddenFields(html: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields[decodeEntities(match[1])] = decodeEntities(match[2]);
  }
  return fields;
}

/** Reads the names of the ticked scope checkboxes on a consent page. */
export function readTickedScopes(html: string): string[] {
  const names: string[] = [];
  for (const match of html.matchAll(/<input type="checkbox" id="[^"]*" name="grant:([^"]+)" value="on" checked>/g)) {
    names.push(decodeEntities(match[1]));
  }
  return names;
}

export interface ConsentChoice {
  action?: 'approve' | 'deny';
  /** Scopes to untick before submitting. */
  untick?: string[];
}

/** Submits a consent page as its form would: hidden fields, the ticked boxes, and a button. */
export async function submitConsent(browser: BrowserSession, html: string, choice: ConsentChoice = {}): Promise<Response> {
  const fields = readHiddenFields(html);
  for (const scope of readTickedScopes(html)) {
    if (!(choice.untick ?? []).includes(scope)) fields[`grant:${scope}`] = 'on';
  }
  fields.action = choice.action ?? 'approve';
  return browser.post('/o/authorize/', fields);
}

/** Splits a redirect `Location` into the URI without its query and the query parameters. */
export function readRedirect(response: Response): { target: string; parameters: Record<string, string> } {
  const location = response.headers.get('location');
  if (location === null) throw new Error(`expected a redirect, got ${response.status} without Location`);

  const url = new URL(location);
  const parameters = Object.fromEntries(url.searchParams);
  url.search = '';
  return { target: url.href, parameters };
}

export interface IssuedCode {
  code: string;
  state: string;
  pkce: Pkce;
  redirectUri: string;
}

/**
 * Runs the browser half of the flow for a signed-in `browser`: the request,
 * the consent page when one is shown, and the redirect back with a code.
 */
export async function obtainCode(
  browser: BrowserSession,
  clientId: string,
  extra: Record<string, string> = {},
  choice: ConsentChoice = {},
): Promise<IssuedCode> {
  const pkce = createPkce();
  const parameters = authorizationParameters(clientId, pkce, extra);

  let response = await browser.get(authorizePath(parameters));
  if (response.status === 200) response = await submitConsent(browser, await response.text(), choice);

  const { parameters: returned } = readRedirect(response);
  if (returned.code === undefined) throw new Error(`no code in the redirect: ${JSON.stringify(returned)}`);
  return { code: returned.code, state: parameters.state, pkce, redirectUri: parameters.redirect_uri };
}

/** Sends a form POST and reads the JSON reply. */
export async function postForm(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<HttpResult> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });

  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // A body that is not JSON stays text, so a failed assertion shows what came back.
  }
  return { status: response.status, headers: response.headers, body };
}

/** RFC 6749 section 2.3.1: the id and secret are form-urlencoded, then joined and Base64-encoded. */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

/** Redeems a code at the token endpoint as a public client, or with `client_secret_basic` when a secret is given. */
export async function redeemCode(
  server: TestServer,
  clientId: string,
  issued: IssuedCode,
  clientSecret?: string,
): Promise<HttpResult> {
  const fields: Record<string, string> = {
    grant_type: 'authorization_code',
    code: issued.code,
    code_verifier: issued.pkce.verifier,
    redirect_uri: issued.redirectUri,
  };
  if (clientSecret === undefined) return postForm(`${server.url}/o/token/`, { ...fields, client_id: clientId });
  return postForm(`${server.url}/o/token/`, fields, { authorization: basicAuthorization(clientId, clientSecret) });
}

/** Refreshes as a public client. */
export async function refresh(server: TestServer, clientId: string, refreshToken: string, extra: Record<string, string> = {}): Promise<HttpResult> {
  return postForm(`${server.url}/o/token/`, {
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: clientId,
    ...extra,
  });
}

/** Calls `GET /api/v1/me/` with a bearer token and returns the status. */
export async function profileStatus(server: TestServer, accessToken: string): Promise<number> {
  const response = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${accessToken}` } });
  await response.arrayBuffer();
  return response.status;
}

/** Decodes a JWT's header and payload without checking the signature. */
export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, any> } {
  const [header, payload] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')),
  };
}

export interface CodeFlowTokens {
  user: User;
  browser: BrowserSession;
  accessToken: string;
  refreshToken: string;
  scope: string;
}

/** Signs a new user in, approves `clientId` for `scope` and redeems the code as a public client. */
export async function obtainTokens(server: TestServer, clientId: string, scope = 'read:profile read:teams'): Promise<CodeFlowTokens> {
  const { user, browser } = await createSignedInUser(server);
  const issued = await obtainCode(browser, clientId, { scope });
  const redeemed = await redeemCode(server, clientId, issued);
  if (redeemed.status !== 200) throw new Error(`code redemption failed: ${redeemed.status} ${JSON.stringify(redeemed.body)}`);

  const body = redeemed.body;
  return { user, browser, accessToken: body.access_token, refreshToken: body.refresh_token, scope: body.scope };
}
