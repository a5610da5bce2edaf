import { createHash, randomBytes } from 'node:crypto';
import { createUser } from '../../src/accounts/users.ts';
import type { User } from '../../src/db/schema.ts';
import { BrowserSession, readCsrfToken } from './browser-session.ts';
import type { TestServer } from './server.ts';

/** Password of every user that `signInUser` creates. */
export const USER_PASSWORD = 'correct horse battery';

export interface JsonResponse {
  status: number;
  headers: Headers;
  /** The parsed JSON body, or the raw text when the body is not JSON. */
  body: any;
}

/** Reads a response body as JSON, falling back to its text. */
export async function readResponse(response: Response): Promise<JsonResponse> {
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON, so the caller gets the text.
  }
  return { status: response.status, headers: response.headers, body };
}

/** Posts `fields` form-encoded, as RFC 6749 section 3.2 requires of token requests. */
export async function postForm(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<JsonResponse> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
  return readResponse(response);
}

/** Posts `body` as JSON. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<JsonResponse> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return readResponse(response);
}

/** Builds an HTTP Basic header for client authentication (RFC 6749 section 2.3.1). */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

export interface Pkce {
  verifier: string;
  challenge: string;
}

/** Creates an RFC 7636 code verifier and its S256 challenge. */
export function createPkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** Creates a user and a browser session signed in as that user. */
export async function signInUser(server: TestServer): Promise<{ user: User; browser: BrowserSession }> {
  const email = `user-${randomBytes(6).toString('hex')}@example.com`;
  const user = await createUser(server.app.speedgate.db, { email, password: USER_PASSWORD }, server.clock.now());

  const browser = new BrowserSession(server.url);
  const login = await browser.logIn(email, USER_PASSWORD);
  if (login.status !== 303) throw new Error(`login as ${email} failed with HTTP ${login.status}`);
  return { user, browser };
}

function decodeEntities(value: string): string {
  return value
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

export interface ConsentResult {
  /** Status of the authorization page: 200 for a consent page, 303 when the scopes were approved before. */
  pageStatus: number;
  /** The consent page, or '' when none was shown. */
  pageHtml: string;
  /** Status of the final response: 303 when the server redirects back to the client. */
  status: number;
  /** The redirect back to the client, carrying `code` or `error`, `state` and `iss`. */
  location: URL;
}

/**
 * Opens an authorization URL in a signed-in browser and approves the consent
 * page as a user would, ticking every scope except those in `untick`. When
 * the user approved these scopes before, the server redirects at once and
 * no form is submitted.
 */
export async function approveConsent(browser: BrowserSession, authorizationUrl: string | URL, untick: string[] = []): Promise<ConsentResult> {
  const url = new URL(authorizationUrl);
  const page = await browser.get(url.pathname + url.search);
  if (page.status !== 200) {
    const location = new URL(page.headers.get('location') ?? 'about:blank', browser.baseUrl);
    return { pageStatus: page.status, pageHtml: '', status: page.status, location };
  }

  const html = await page.text();
  const fields: Record<string, string> = { csrf_token: readCsrfToken(html), action: 'approve' };
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields[decodeEntities(match[1])] = decodeEntities(match[2]);
  }
  for (const match of html.matchAll(/<input type="checkbox" id="[^"]*" name="(grant:[^"]+)" value="on"/g)) {
    const field = decodeEntities(match[1]);
    if (!untick.includes(field.slice('grant:'.length))) fields[field] = 'on';
  }

  const submitted = await browser.post('/o/authorize/', fields);
  const location = new URL(submitted.headers.get('location') ?? 'about:blank', browser.baseUrl);
  return { pageStatus: page.status, pageHtml: html, status: submitted.status, location };
}

/** Reads the message of an error page, with its HTML entities decoded. */
export function readErrorPage(html: string): string | undefined {
  const match = /<p class="error" role="alert">([^<]*)<\/p>/.exec(html);
  return match === null ? undefined : decodeEntities(match[1]);
}
