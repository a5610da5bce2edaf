import { createHash, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { createPat } from '../src/accounts/personal-access-tokens.ts';
import { createUser } from '../src/accounts/users.ts';
import type { Config } from '../src/config.ts';
import type { Database, Grant } from '../src/db/schema.ts';
import { GRANT_TYPES, registerClient } from '../src/oauth/clients.ts';
import { decideDeviceCode, findDeviceCode, normalizeUserCode } from '../src/oauth/device-codes.ts';
import { resolveResource } from '../src/oauth/resources.ts';
import type { ScopeRegistry } from '../src/oauth/scopes.ts';
import { randomToken, sha256Hex } from '../src/oauth/secrets.ts';
import { REFRESH_TOKEN_PREFIX, createGrant } from '../src/oauth/tokens.ts';

/** The bench database, the server's settings and the running server, for seeding. */
export interface SeedContext {
  db: Kysely<Database>;
  /** The same settings the server child parsed from its environment. */
  config: Config;
  scopes: ScopeRegistry;
  serverUrl: string;
}

/** The accounts, clients and tokens that every measured route uses. */
export interface Fixtures {
  userId: string;
  /** `Authorization` header value of the confidential client (`client_secret_basic`). */
  basicAuthorization: string;
  /** A public client for the device, refresh and authorization code grants, like an MCP client. */
  publicClientId: string;
  redirectUri: string;
  pat: string;
  /** An RFC 9068 access token for the user, issued by the server through the device flow. */
  accessToken: string;
}

const PROFILE_SCOPE = 'read:profile';
const REDIRECT_URI = 'http://127.0.0.1:8976/callback';
const INSERT_BATCH_ROWS = 1000;

/** The PKCE verifier of every seeded authorization code (RFC 7636 section 4.1). */
export const CODE_VERIFIER = randomToken(32);
const CODE_CHALLENGE = createHash('sha256').update(CODE_VERIFIER, 'ascii').digest('base64url');

async function postForm(
  url: string,
  fields: Record<string, string>,
  headers: Record<string, string> = {},
) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`POST ${url} returned ${response.status}: ${text}`);
  return JSON.parse(text) as Record<string, string>;
}

function basicAuthorization(clientId: string, secret: string): string {
  // RFC 6749 section 2.3.1: each half is form-urlencoded before Base64.
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`;
}

/** Starts a device authorization at the server and returns the raw device and user codes. */
async function startDeviceAuthorization(serverUrl: string, clientId: string) {
  const response = await postForm(`${serverUrl}/o/device-authorization/`, { client_id: clientId });
  return { deviceCode: response.device_code, userCode: response.user_code };
}

// Runs the device flow to its end: start, approve as the user, redeem.
async function issueUserAccessToken(
  context: SeedContext,
  clientId: string,
  userId: string,
): Promise<string> {
  const { deviceCode, userCode } = await startDeviceAuthorization(context.serverUrl, clientId);

  const row = await findDeviceCode(context.db, normalizeUserCode(userCode) ?? '');
  if (row === undefined) throw new Error(`The device authorization for ${userCode} was not stored`);
  await decideDeviceCode(context.db, row.id, userId, true, new Date());

  const tokens = await postForm(`${context.serverUrl}/o/token/`, {
    grant_type: GRANT_TYPES.deviceCode,
    device_code: deviceCode,
    client_id: clientId,
  });
  return tokens.access_token;
}

/** Creates the user, the clients, a PAT and an access token through Speedgate's own code. */
export async function seedFixtures(context: SeedContext): Promise<Fixtures> {
  const { db, scopes } = context;
  const now = new Date();

  const service = await registerClient(
    db,
    scopes,
    {
      name: 'Bench service',
      grantTypes: [GRANT_TYPES.clientCredentials],
      confidential: true,
      registrationType: 'operator',
    },
    now,
  );
  const mcpClient = await registerClient(
    db,
    scopes,
    {
      name: 'Bench MCP client',
      grantTypes: [GRANT_TYPES.authorizationCode, GRANT_TYPES.refreshToken, GRANT_TYPES.deviceCode],
      redirectUris: [REDIRECT_URI],
      registrationType: 'operator',
    },
    now,
  );

  const user = await createUser(
    db,
    { email: 'bench@example.com', password: randomToken(18), name: 'Bench User' },
    now,
  );
  const { token: pat } = await createPat(
    db,
    scopes,
    user,
    { name: 'bench', scopes: [PROFILE_SCOPE], expiresAt: null },
    now,
  );

  return {
    userId: user.id,
    basicAuthorization: basicAuthorization(service.client.id, service.clientSecret ?? ''),
    publicClientId: mcpClient.client.id,
    redirectUri: REDIRECT_URI,
    pat,
    accessToken: await issueUserAccessToken(context, mcpClient.client.id, user.id),
  };
}

/** Starts `count` device authorizations that stay pending, and returns their device codes. */
export async function seedPendingDeviceCodes(
  context: SeedContext,
  fixtures: Fixtures,
  count: number,
): Promise<string[]> {
  const codes: string[] = [];
  for (let i = 0; i < count; i++) {
    codes.push(
      (await startDeviceAuthorization(context.serverUrl, fixtures.publicClientId)).deviceCode,
    );
  }
  return codes;
}

async function insertInBatches<Row>(
  rows: Row[],
  insert: (batch: Row[]) => Promise<unknown>,
): Promise<void> {
  for (let start = 0; start < rows.length; start += INSERT_BATCH_ROWS) {
    await insert(rows.slice(start, start + INSERT_BATCH_ROWS));
  }
}

/**
 * Creates `count` authorizations of the user for the public client, each with
 * one refresh token, stored as the refresh grant stores them (SHA-256 of the
 * raw value). Returns the raw tokens.
 */
export async function seedRefreshTokens(
  context: SeedContext,
  fixtures: Fixtures,
  count: number,
): Promise<string[]> {
  const { db, config } = context;
  const now = new Date();
  const resource = resolveResource(config, undefined);

  const grants = await db.transaction().execute(async (trx) => {
    const created: Grant[] = [];
    for (let i = 0; i < count; i++) {
      const values = {
        userId: fixtures.userId,
        clientId: fixtures.publicClientId,
        scope: PROFILE_SCOPE,
        resource,
        origin: 'authorization_code',
        now,
      };
      created.push(await createGrant(trx, values));
    }
    return created;
  });

  const tokens = grants.map(() => `${REFRESH_TOKEN_PREFIX}${randomToken(32)}`);
  const rows = grants.map((grant, index) => ({
    id: randomUUID(),
    token_hash: sha256Hex(tokens[index]),
    grant_id: grant.id,
    scope: PROFILE_SCOPE,
    created_at: now,
    expires_at: new Date(now.getTime() + config.refreshTokenTtlSeconds * 1000),
  }));
  await insertInBatches(rows, (batch) => db.insertInto('refresh_tokens').values(batch).execute());
  return tokens;
}

/**
 * Stores `count` authorization codes for the user and the public client, as
 * the consent step does (SHA-256 of the raw code, S256 challenge of
 * CODE_VERIFIER), and returns the raw codes. They live `lifetimeSeconds`,
 * which may exceed the 60 s of a real code so a long run does not outlive them.
 */
export async function seedAuthorizationCodes(
  context: SeedContext,
  fixtures: Fixtures,
  count: number,
  lifetimeSeconds: number,
): Promise<string[]> {
  const now = new Date();
  const resource = resolveResource(context.config, undefined);
  const codes = Array.from({ length: count }, () => randomToken(32));

  const rows = codes.map((code) => ({
    id: randomUUID(),
    code_hash: sha256Hex(code),
    client_id: fixtures.publicClientId,
    user_id: fixtures.userId,
    redirect_uri: fixtures.redirectUri,
    redirect_uri_sent: true,
    scope: PROFILE_SCOPE,
    resource,
    code_challenge: CODE_CHALLENGE,
    created_at: now,
    expires_at: new Date(now.getTime() + lifetimeSeconds * 1000),
  }));
  await insertInBatches(rows, (batch) =>
    context.db.insertInto('authorization_codes').values(batch).execute(),
  );
  return codes;
}
