import { createUser } from '../../src/accounts/users.ts';
import type { User } from '../../src/db/schema.ts';
import { registerClient, type ClientRegistration, type RegisteredClient } from '../../src/oauth/clients.ts';
import { decideDeviceCode, findDeviceCode, normalizeUserCode } from '../../src/oauth/device-codes.ts';
import type { TestServer } from './server.ts';

export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** Password of every user that `createTestUser` creates. */
export const TEST_PASSWORD = 'correct horse battery';

export interface JsonResponse {
  status: number;
  headers: Headers;
  /** The parsed JSON body, or the text when it is not JSON. Typed loosely so tests can read any field. */
  body: any;
}

async function readJson(response: Response): Promise<JsonResponse> {
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // A body that is not JSON stays as text, so a failing assertion shows the response.
  }
  return { status: response.status, headers: response.headers, body };
}

/** Sends `fields` as an application/x-www-form-urlencoded POST and reads the JSON reply. */
export async function postForm(
  url: string,
  fields: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<JsonResponse> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
  return readJson(response);
}

/** Sends a raw body with the given headers, for malformed-request tests. */
export async function postRaw(url: string, body: string | Uint8Array, headers: Record<string, string>): Promise<JsonResponse> {
  return readJson(await fetch(url, { method: 'POST', headers, body }));
}

/** Calls the demo API with an optional bearer token and JSON body. */
export async function callApi(
  server: TestServer,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
): Promise<JsonResponse> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';

  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return readJson(response);
}

/** Returns the value for an HTTP Basic `Authorization` header (RFC 6749 section 2.3.1). */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

let userCount = 0;

/** Creates a user with the test password and a fresh email address unless one is given. */
export async function createTestUser(server: TestServer, email?: string, name = 'Test User'): Promise<User> {
  userCount += 1;
  const address = email ?? `user${userCount}-${Date.now()}@example.com`;
  return createUser(server.app.speedgate.db, { email: address, password: TEST_PASSWORD, name }, server.clock.now());
}

/** Registers an operator client, by default a public device-flow client with every grantable scope. */
export async function createTestClient(
  server: TestServer,
  registration: Partial<ClientRegistration> = {},
): Promise<RegisteredClient> {
  const { db, scopes } = server.app.speedgate;
  return registerClient(
    db,
    scopes,
    { name: 'Test CLI', registrationType: 'operator', ...registration },
    server.clock.now(),
  );
}

export interface DeviceStart {
  deviceCode: string;
  userCode: string;
  /** Id of the device_codes row, for `decideDeviceCode`. */
  rowId: string;
}

/** Starts a device authorization for a public client through the HTTP endpoint. */
export async function startDevice(
  server: TestServer,
  clientId: string,
  fields: Record<string, string> = {},
): Promise<DeviceStart> {
  const started = await postForm(`${server.url}/o/device-authorization/`, { client_id: clientId, ...fields });
  if (started.status !== 200) {
    throw new Error(`device authorization failed with ${started.status}: ${JSON.stringify(started.body)}`);
  }

  const row = await findDeviceCode(server.app.speedgate.db, normalizeUserCode(started.body.user_code) ?? '');
  if (row === undefined) throw new Error(`no device_codes row for user code ${started.body.user_code}`);
  return { deviceCode: started.body.device_code, userCode: started.body.user_code, rowId: row.id };
}

/** Records the user's approval or denial as the device page would. */
export async function decideDevice(server: TestServer, start: DeviceStart, userId: string, approved = true): Promise<void> {
  const { cache, db } = server.app.speedgate;
  // The device page's request applies the announcement to this node's cache at once, and so does this helper.
  const decided = await cache.withLocalAnnouncements(() => decideDeviceCode(db, start.rowId, userId, approved, server.clock.now()));
  if (!decided) throw new Error('the device authorization was no longer pending');
}

/** Polls the token endpoint once with a device code, as a public client. */
export async function redeemDevice(server: TestServer, clientId: string, deviceCode: string): Promise<JsonResponse> {
  return postForm(`${server.url}/o/token/`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId });
}

export interface IssuedTokens {
  user: User;
  clientId: string;
  accessToken: string;
  refreshToken: string | undefined;
  scope: string;
}

export interface IssueOptions {
  /** The user to act for; a new one is created when absent. */
  user?: User;
  /** A public client's id; a new device-flow client is registered when absent. */
  clientId?: string;
  scope?: string;
}

/**
 * Runs the device flow without a browser: start, approve in the database,
 * redeem. Returns the tokens and whom they were issued to.
 */
export async function issueTestTokens(server: TestServer, options: IssueOptions = {}): Promise<IssuedTokens> {
  const user = options.user ?? (await createTestUser(server));
  const clientId = options.clientId ?? (await createTestClient(server)).client.id;

  const start = await startDevice(server, clientId, options.scope === undefined ? {} : { scope: options.scope });
  await decideDevice(server, start, user.id);

  const issued = await redeemDevice(server, clientId, start.deviceCode);
  if (issued.status !== 200) {
    throw new Error(`device code redemption failed with ${issued.status}: ${JSON.stringify(issued.body)}`);
  }
  return {
    user,
    clientId,
    accessToken: issued.body.access_token,
    refreshToken: issued.body.refresh_token,
    scope: issued.body.scope,
  };
}
