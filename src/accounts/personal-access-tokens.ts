import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database, PersonalAccessToken, User } from '../db/schema.ts';
import type { IntrospectionResponse } from '../oauth/introspection.ts';
import type { Scope, ScopeRegistry } from '../oauth/scopes.ts';
import type { AuthCache } from '../db/auth-cache.ts';
import { announceChange } from '../db/invalidation.ts';
import { sha256Hex } from '../oauth/secrets.ts';
import { PAT_PREFIX, generatePat, isWellFormedPat } from './pat-format.ts';
import { AccountError } from './users.ts';

const MAX_NAME_LENGTH = 100;
const MAX_LIFETIME_DAYS = 366;
const DISPLAY_PREFIX_LENGTH = PAT_PREFIX.length + 6;

export interface NewPat {
  name: string;
  scopes: string[];
  expiresAt: Date | null;
  /** The id of the submitted page form, so a resubmission does not create a second token. */
  formId?: string;
}

/** Returns the scopes a user may put on a token: all grantable ones, and `admin` for administrators. */
export function scopesForUser(registry: ScopeRegistry, user: User): Scope[] {
  return registry.all().filter((scope) => !scope.reserved || (scope.name === 'admin' && user.is_admin));
}

function validateNewPat(registry: ScopeRegistry, user: User, input: NewPat, now: Date): NewPat {
  const name = input.name.trim();
  if (name === '' || name.length > MAX_NAME_LENGTH) {
    throw new AccountError('name', `The token name must be 1 to ${MAX_NAME_LENGTH} characters`);
  }

  const allowed = new Set(scopesForUser(registry, user).map((scope) => scope.name));
  const scopes = [...new Set(input.scopes)];
  if (scopes.length === 0) throw new AccountError('scopes', 'Choose at least one scope');
  const forbidden = scopes.filter((scope) => !allowed.has(scope));
  if (forbidden.length > 0) throw new AccountError('scopes', `You may not grant the scope ${forbidden.join(', ')}`);

  const expiresAt = input.expiresAt;
  if (expiresAt !== null) {
    if (Number.isNaN(expiresAt.getTime()) || expiresAt <= now) {
      throw new AccountError('expires', 'The expiry date must be in the future');
    }
    if (expiresAt.getTime() - now.getTime() > MAX_LIFETIME_DAYS * 86_400_000) {
      throw new AccountError('expires', `The expiry date must be within ${MAX_LIFETIME_DAYS} days`);
    }
  }
  if (input.formId !== undefined && !/^[A-Za-z0-9_-]{16,64}$/.test(input.formId)) {
    throw new AccountError('form', 'The form is invalid. Reload the page and try again.');
  }
  return { name, scopes, expiresAt, formId: input.formId };
}

/**
 * Creates a personal access token and returns it with its row. The raw token
 * exists only in this return value: the database keeps its SHA-256 hash.
 */
export async function createPat(
  db: Kysely<Database>,
  registry: ScopeRegistry,
  user: User,
  input: NewPat,
  now: Date,
): Promise<{ token: string; row: PersonalAccessToken }> {
  const valid = validateNewPat(registry, user, input, now);
  const token = generatePat();

  const row = await db
    .insertInto('personal_access_tokens')
    .values({
      id: randomUUID(),
      user_id: user.id,
      name: valid.name,
      token_hash: sha256Hex(token),
      display_prefix: token.slice(0, DISPLAY_PREFIX_LENGTH),
      scope: valid.scopes.join(' '),
      created_at: now,
      expires_at: valid.expiresAt,
      form_id: valid.formId ?? null,
    })
    .onConflict((conflict) => conflict.columns(['user_id', 'form_id']).doNothing())
    .returningAll()
    .executeTakeFirst();

  if (row === undefined) {
    throw new AccountError(
      'form',
      'This form was already submitted and its token created. It is not shown again: revoke it below if you did not copy it, and create a new one.',
    );
  }
  return { token, row };
}

export async function listPats(db: Kysely<Database>, userId: string): Promise<PersonalAccessToken[]> {
  return db
    .selectFrom('personal_access_tokens')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('created_at', 'desc')
    .execute();
}

/** Revokes one of the user's own tokens. Returns false when the user has no such active token. */
export async function revokePat(db: Kysely<Database>, userId: string, id: string, now: Date): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('personal_access_tokens')
      .set({ revoked_at: now, revoked_reason: 'user' })
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .returning('token_hash')
      .executeTakeFirst();
    if (row !== undefined) await announceChange(trx, `pat:${row.token_hash}`);
    return row !== undefined;
  });
}

/**
 * Finds the active token for a raw `spd_` value. A malformed value or a wrong
 * checksum returns undefined without a database read.
 */
export async function findActivePat(
  db: Kysely<Database>,
  raw: string,
  now: Date,
  cache?: AuthCache,
): Promise<PersonalAccessToken | undefined> {
  if (!isWellFormedPat(raw)) return undefined;

  const hash = sha256Hex(raw);
  let row = cache?.enabled ? cache.pats.get(hash) : undefined;
  if (row === undefined) {
    const stamp = cache?.stamp() ?? 0;
    row = await db.selectFrom('personal_access_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    if (row !== undefined) cache?.store(cache.pats, hash, row, stamp);
  }
  if (row === undefined || row.revoked_at !== null) return undefined;
  if (row.expires_at !== null && row.expires_at <= now) return undefined;
  return row;
}

/**
 * Revokes a token that someone reported as leaked, recording where it was
 * found. Returns the owner when an active token was revoked; the caller must not
 * tell the reporter, so the endpoint reveals nothing about the token.
 */
export async function revokeLeakedPat(
  db: Kysely<Database>,
  raw: string,
  source: string | undefined,
  now: Date,
): Promise<{ userId: string } | undefined> {
  if (!isWellFormedPat(raw)) return undefined;

  const hash = sha256Hex(raw);
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('personal_access_tokens')
      .set({ revoked_at: now, revoked_reason: 'leak_report', leak_source: source?.slice(0, 500) ?? null })
      .where('token_hash', '=', hash)
      .where('revoked_at', 'is', null)
      .returning('user_id as userId')
      .executeTakeFirst();
    if (row !== undefined) await announceChange(trx, `pat:${hash}`);
    return row;
  });
}

/**
 * Returns the RFC 7662 description of a personal access token, or undefined
 * when `raw` does not have the `spd_` prefix. `issuer` becomes the `iss`.
 */
export async function introspectPat(
  db: Kysely<Database>,
  raw: string,
  issuer: string,
  now: Date,
): Promise<IntrospectionResponse | undefined> {
  if (!raw.startsWith(PAT_PREFIX)) return undefined;

  const row = await findActivePat(db, raw, now);
  if (row === undefined) return { active: false };

  const seconds = (date: Date) => Math.floor(date.getTime() / 1000);
  return {
    active: true,
    token_type: 'Bearer',
    token_kind: 'personal_access_token',
    scope: row.scope,
    sub: row.user_id,
    iss: issuer,
    iat: seconds(row.created_at),
    ...(row.expires_at === null ? {} : { exp: seconds(row.expires_at) }),
  };
}
