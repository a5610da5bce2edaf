import { randomInt, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { announceChange } from '../db/invalidation.ts';
import type { Client, Database, DeviceCode } from '../db/schema.ts';
import { GRANT_TYPES } from './clients.ts';
import type { OAuthContext } from './context.ts';
import { OAuthError } from './errors.ts';
import type { Parameters } from './parameters.ts';
import { resolveResource } from './resources.ts';
import { randomToken, sha256Hex } from './secrets.ts';

/** Consonants only (RFC 8628 section 6.1): no vowels to spell words, no look-alike digits. */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
const USER_CODE_LENGTH = 8;

/** The RFC 8628 section 3.2 device authorization response. */
export interface DeviceAuthorizationResponse {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

export interface Requester {
  ip: string;
  userAgent: string | undefined;
}

function generateUserCode(): string {
  let code = '';
  for (let i = 0; i < USER_CODE_LENGTH; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/**
 * Normalizes what a user typed: case-insensitive, with or without the dash or
 * spaces. Returns the 8-letter code, or null when it cannot be a user code.
 */
export function normalizeUserCode(input: string): string | null {
  const code = input.toUpperCase().replace(/[\s-]/g, '');
  if (code.length !== USER_CODE_LENGTH) return null;
  return [...code].every((letter) => USER_CODE_ALPHABET.includes(letter)) ? code : null;
}

/** Formats a normalized user code for display as XXXX-XXXX. */
export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/** Resolves the requested scope: absent means every scope the client may hold. */
export function resolveClientScope(context: OAuthContext, client: Client, scope: string | undefined): string {
  if (scope === undefined) return client.scopes.join(' ');

  const requested = context.scopes.parse(scope);
  const outside = requested.filter((name) => !client.scopes.includes(name));
  if (outside.length > 0) {
    throw new OAuthError('invalid_scope', `The client may not request the scope ${outside.join(', ')}`);
  }
  if (requested.length === 0) throw new OAuthError('invalid_scope', 'The scope parameter names no scope');
  return requested.join(' ');
}

/**
 * Starts a device authorization (RFC 8628 section 3.1) for an authenticated
 * client and returns the codes to show the user.
 */
export async function startDeviceAuthorization(
  context: OAuthContext,
  client: Client,
  parameters: Parameters,
  requester: Requester,
): Promise<DeviceAuthorizationResponse> {
  const { config, db } = context;

  if (!client.grant_types.includes(GRANT_TYPES.deviceCode)) {
    throw new OAuthError('unauthorized_client', 'The client is not allowed to use the device authorization grant');
  }
  const scope = resolveClientScope(context, client, parameters.scope);
  const resource = resolveResource(config, parameters.resource);

  const now = config.now();
  const deviceCode = randomToken(32);
  const userCode = await insertDeviceCode(db, {
    id: randomUUID(),
    device_code_hash: sha256Hex(deviceCode),
    client_id: client.id,
    scope,
    resource,
    status: 'pending',
    interval_seconds: config.deviceCodeIntervalSeconds,
    requester_ip: requester.ip,
    requester_user_agent: requester.userAgent?.slice(0, 500) ?? null,
    created_at: now,
    expires_at: new Date(now.getTime() + config.deviceCodeTtlSeconds * 1000),
  });

  const verificationUri = `${config.issuer}/o/device/`;
  const display = formatUserCode(userCode);
  return {
    device_code: deviceCode,
    user_code: display,
    verification_uri: verificationUri,
    verification_uri_complete: `${verificationUri}?user_code=${display}`,
    expires_in: config.deviceCodeTtlSeconds,
    interval: config.deviceCodeIntervalSeconds,
  };
}

type NewDeviceCode = Omit<DeviceCode, 'user_code_hash' | 'user_id' | 'last_polled_at'>;

// A user code has about 34 bits, so two live flows can draw the same one:
// draw again on a unique-index conflict.
async function insertDeviceCode(db: Kysely<Database>, row: NewDeviceCode): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const userCode = generateUserCode();
    const inserted = await db
      .insertInto('device_codes')
      .values({ ...row, user_code_hash: sha256Hex(userCode) })
      .onConflict((conflict) => conflict.column('user_code_hash').doNothing())
      .returning('id')
      .executeTakeFirst();

    if (inserted !== undefined) return userCode;
    if (attempt >= 5) throw new Error('Could not draw an unused user code after 6 attempts');
  }
}

/** Finds the device authorization for a normalized user code, in any state. */
export async function findDeviceCode(db: Kysely<Database>, userCode: string): Promise<DeviceCode | undefined> {
  return db
    .selectFrom('device_codes')
    .selectAll()
    .where('user_code_hash', '=', sha256Hex(userCode))
    .executeTakeFirst();
}

/**
 * Records the user's decision on a pending, unexpired device authorization.
 * Returns false when it was no longer pending, so a second tab cannot overturn
 * the first decision.
 */
export async function decideDeviceCode(
  db: Kysely<Database>,
  id: string,
  userId: string,
  approved: boolean,
  now: Date,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const decided = await trx
      .updateTable('device_codes')
      .set({ status: approved ? 'approved' : 'denied', user_id: userId })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .where('expires_at', '>', now)
      .returning('device_code_hash')
      .executeTakeFirst();
    if (decided === undefined) return false;

    // Nodes handle polls of a pending code in memory until the decision is announced.
    await announceChange(trx, `device:${decided.device_code_hash}`);
    return true;
  });
}
