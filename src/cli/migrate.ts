import { loadConfig } from '../config.ts';
import { migrateToLatest, openDatabase } from '../db/database.ts';

// Applies pending migrations and prints one line per migration.
const config = loadConfig();
const { db, kind } = await openDatabase(config);
try {
  const results = await migrateToLatest(db);
  for (const result of results) console.log(`${result.status === 'Success' ? 'applied' : result.status}: ${result.migrationName}`);
  console.log(results.length === 0 ? `${kind}: already up to date` : `${kind}: ${results.length} migration(s) applied`);
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  await db.destroy();
}
