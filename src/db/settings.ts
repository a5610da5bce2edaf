import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';

/**
 * Returns the stored value of a server-wide setting, storing `generate()`
 * first if it has none. Concurrent first starts agree on one value, because
 * the insert does nothing when another node won the race.
 */
export async function loadOrCreateSetting(db: Kysely<Database>, name: string, generate: () => string): Promise<string> {
  await db
    .insertInto('settings')
    .values({ name, value: generate() })
    .onConflict((conflict) => conflict.column('name').doNothing())
    .execute();

  const row = await db.selectFrom('settings').select('value').where('name', '=', name).executeTakeFirstOrThrow();
  return row.value;
}
