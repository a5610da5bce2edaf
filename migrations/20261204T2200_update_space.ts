import { sql, type Kysely } from 'kysely';

// Each refresh token and authorization code is updated once after it is written:
// rotated or consumed. Space left free in each page lets PostgreSQL keep the new
// row version beside the old one, so the update adds no index entries.
const TABLES = ['refresh_tokens', 'authorization_codes', 'device_codes'];

export async function up(db: Kysely<any>): Promise<void> {
  for (const table of TABLES) await sql`alter table ${sql.table(table)} set (fillfactor = 70)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of TABLES) await sql`alter table ${sql.table(table)} reset (fillfactor)`.execute(db);
}
