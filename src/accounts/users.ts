import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database, User } from '../db/schema.ts';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hashPassword, verifyAgainstDummy, verifyPassword } from './passwords.ts';

/** A rejected account request, with a message fit to show the user. */
export class AccountError extends Error {
  override name = 'AccountError';
  readonly field: string;

  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MAX_EMAIL_LENGTH = 254;
const MAX_NAME_LENGTH = 100;

export interface NewUser {
  email: string;
  password: string;
  name?: string;
  isAdmin?: boolean;
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

function validateNewUser(input: NewUser): { email: string; name: string } {
  const email = normalizeEmail(input.email);
  if (email.length > MAX_EMAIL_LENGTH || !EMAIL.test(email)) {
    throw new AccountError('email', 'Enter a valid email address, such as ada@example.com');
  }

  if (input.password.length < MIN_PASSWORD_LENGTH || input.password.length > MAX_PASSWORD_LENGTH) {
    throw new AccountError(
      'password',
      `The password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long`,
    );
  }

  const name = (input.name ?? '').trim() || email.split('@')[0];
  if (name.length > MAX_NAME_LENGTH) {
    throw new AccountError('name', `The name must be at most ${MAX_NAME_LENGTH} characters`);
  }
  return { email, name };
}

/**
 * Creates a user with a personal team that the user owns. Throws AccountError
 * for invalid input or an email address already registered.
 */
export async function createUser(db: Kysely<Database>, input: NewUser, now: Date): Promise<User> {
  const { email, name } = validateNewUser(input);
  const passwordHash = await hashPassword(input.password);

  return db.transaction().execute(async (trx) => {
    const user = await trx
      .insertInto('users')
      .values({
        id: randomUUID(),
        email,
        name,
        password_hash: passwordHash,
        is_admin: input.isAdmin ?? false,
        created_at: now,
      })
      .onConflict((conflict) => conflict.column('email').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (user === undefined) throw new AccountError('email', 'An account with this email address already exists');

    const team = await trx
      .insertInto('teams')
      .values({ id: randomUUID(), name: `${name}'s team`, created_at: now })
      .returning('id')
      .executeTakeFirstOrThrow();
    await trx
      .insertInto('team_members')
      .values({ team_id: team.id, user_id: user.id, role: 'owner', joined_at: now })
      .execute();
    return user;
  });
}

/** Returns the user whose email and password match, or undefined. */
export async function authenticateUser(db: Kysely<Database>, email: string, password: string): Promise<User | undefined> {
  const user = await db
    .selectFrom('users')
    .selectAll()
    .where('email', '=', normalizeEmail(email))
    .executeTakeFirst();

  if (user === undefined) {
    await verifyAgainstDummy(password);
    return undefined;
  }
  return (await verifyPassword(password, user.password_hash)) ? user : undefined;
}

export async function findUser(db: Kysely<Database>, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}
