import type { Kysely } from 'kysely';

// The id of the page form that created a token, so a resubmitted form (a
// browser reload after the POST) cannot create a second token.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('personal_access_tokens').addColumn('form_id', 'text').execute();
  await db.schema
    .createIndex('personal_access_tokens_user_form_idx')
    .on('personal_access_tokens')
    .columns(['user_id', 'form_id'])
    .unique()
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('personal_access_tokens_user_form_idx').execute();
  await db.schema.alterTable('personal_access_tokens').dropColumn('form_id').execute();
}
