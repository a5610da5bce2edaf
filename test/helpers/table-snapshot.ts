import { sql, type Kysely } from 'kysely';
import type { Database } from '../../src/db/schema.ts';

/**
 * Tables that a rejected request may legitimately write to: rate-limit
 * counters count failed attempts, and the audit log records failed logins
 * and detected token reuse. Every other table must be left as it was.
 */
export const TABLES_WRITTEN_BY_REJECTIONS = ['rate_limits', 'audit_events'];

async function listTables(db: Kysely<Database>, excluded: readonly string[]): Promise<string[]> {
  const result = await sql<{ table_name: string }>`
    select table_name from information_schema.tables
    where table_schema = current_schema() and table_type = 'BASE TABLE'
    order by table_name`.execute(db);
  return result.rows.map((row) => row.table_name).filter((name) => !excluded.includes(name));
}

/** Counts the rows of every table except `excluded`, in one query. */
export async function countRows(
  db: Kysely<Database>,
  excluded: readonly string[] = TABLES_WRITTEN_BY_REJECTIONS,
): Promise<Record<string, number>> {
  const tables = await listTables(db, excluded);
  const selects = tables.map((name) => sql`select ${name} as name, count(*)::int as rows from ${sql.table(name)}`);
  const result = await sql<{ name: string; rows: number }>`${sql.join(selects, sql` union all `)}`.execute(db);
  return Object.fromEntries(result.rows.map((row) => [row.name, Number(row.rows)]));
}

/**
 * Reads the full content of every table except `excluded`, each row as JSON
 * text and sorted, so two snapshots are equal only when nothing changed.
 */
export async function snapshotTables(
  db: Kysely<Database>,
  excluded: readonly string[] = TABLES_WRITTEN_BY_REJECTIONS,
): Promise<Record<string, string[]>> {
  const snapshot: Record<string, string[]> = {};
  for (const name of await listTables(db, excluded)) {
    const result = await sql<{ row: string }>`select row_to_json(t)::text as row from ${sql.table(name)} t`.execute(db);
    snapshot[name] = result.rows.map((entry) => entry.row).sort();
  }
  return snapshot;
}

/** Lists the tables whose row counts differ between two `countRows` results. */
export function changedTables(before: Record<string, number>, after: Record<string, number>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((name) => before[name] !== after[name]).map((name) => `${name}: ${before[name]} -> ${after[name]}`);
}
