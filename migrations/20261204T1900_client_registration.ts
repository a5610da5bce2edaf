import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('clients')
    // RFC 7591 metadata shown to users and echoed back: client_uri, logo_uri, contacts and the like.
    .addColumn('metadata', 'jsonb', (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('registration_access_token_hash', 'text')
    // Only an operator may turn PKCE off, and only for a confidential client of a platform that cannot send it.
    .addColumn('require_pkce', 'boolean', (col) => col.notNull().defaultTo(true))
    .addColumn('last_used_at', 'timestamptz')
    .execute();

  await db.schema.alterTable('authorization_codes').alterColumn('code_challenge', (col) => col.dropNotNull()).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.deleteFrom('authorization_codes').where('code_challenge', 'is', null).execute();
  await db.schema.alterTable('authorization_codes').alterColumn('code_challenge', (col) => col.setNotNull()).execute();
  await db.schema
    .alterTable('clients')
    .dropColumn('metadata')
    .dropColumn('registration_access_token_hash')
    .dropColumn('require_pkce')
    .dropColumn('last_used_at')
    .execute();
}
