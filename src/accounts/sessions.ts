import type { Kysely } from 'kysely';
import type { Database, User } from '../db/schema.ts';
import { randomToken, sha256Hex } from '../oauth/secrets.ts';

export interface SessionRequester {
  ip: string;
  userAgent: string | undefined;
}

/** Stores a new browser session and returns its raw id, which only the cookie carries. */
export async function createSession(
  db: Kysely<Database>,
  userId: string,
  now: Date,
  ttlSeconds: number,
  requester: SessionRequester,
): Promise<string> {
  const id = randomToken(32);
  await db
    .insertInto('sessions')
    .values({
      id_hash: sha256Hex(id),
      user_id: userId,
      created_at: now,
      expires_at: new Date(now.getTime() + ttlSeconds * 1000),
      ip_address: requester.ip,
      user_agent: requester.userAgent?.slice(0, 500) ?? null,
    })
    .execute();
  return id;
}

/** Returns the user of an unexpired session, or undefined. */
export async function findSessionUser(db: Kysely<Database>, sessionId: string, now: Date): Promise<User | undefined> {
  return db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .selectAll('users')
    .where('sessions.id_hash', '=', sha256Hex(sessionId))
    .where('sessions.expires_at', '>', now)
    .executeTakeFirst();
}

export async function deleteSession(db: Kysely<Database>, sessionId: string): Promise<void> {
  await db.deleteFrom('sessions').where('id_hash', '=', sha256Hex(sessionId)).execute();
}
