import { randomUUID } from 'node:crypto';
import type { Insertable, Kysely } from 'kysely';
import type { AuditEventsTable, Database } from './schema.ts';

/** Security events kept in the audit log. */
export type AuditEventName =
  | 'login_succeeded'
  | 'login_failed'
  | 'user_created'
  | 'consent_granted'
  | 'device_approved'
  | 'device_denied'
  | 'token_issued'
  | 'token_refreshed'
  | 'token_revoked'
  | 'refresh_token_reuse_detected'
  | 'code_reuse_detected'
  | 'access_revoked'
  | 'client_registered'
  | 'client_updated'
  | 'client_deleted'
  | 'client_secret_rotated'
  | 'pat_created'
  | 'pat_revoked'
  | 'pat_leak_reported';

export interface AuditEvent {
  event: AuditEventName;
  userId?: string | null;
  clientId?: string | null;
  ip?: string;
  userAgent?: string;
  detail?: string;
}

/** How often buffered events are written, in milliseconds. */
const FLUSH_INTERVAL_MS = 1000;
const MAX_BUFFERED = 200;

/**
 * The audit log. Events are buffered and written in one insert each second
 * (or at 200 events), so recording one adds no query to the request that
 * caused it. NOTE: events buffered when the process is killed without a
 * graceful shutdown are lost; a clean close writes them.
 */
export class AuditLog {
  readonly #db: Kysely<Database>;
  readonly #now: () => Date;
  readonly #onError: (error: unknown) => void;
  readonly #timer: NodeJS.Timeout;
  #buffer: Insertable<AuditEventsTable>[] = [];

  constructor(db: Kysely<Database>, now: () => Date, onError: (error: unknown) => void) {
    this.#db = db;
    this.#now = now;
    this.#onError = onError;
    this.#timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  record(event: AuditEvent): void {
    this.#buffer.push({
      id: randomUUID(),
      event: event.event,
      user_id: event.userId ?? null,
      client_id: event.clientId ?? null,
      ip_address: event.ip ?? null,
      user_agent: event.userAgent?.slice(0, 300) ?? null,
      detail: event.detail?.slice(0, 500) ?? null,
      created_at: this.#now(),
    });
    if (this.#buffer.length >= MAX_BUFFERED) void this.flush();
  }

  async flush(): Promise<void> {
    if (this.#buffer.length === 0) return;
    const batch = this.#buffer;
    this.#buffer = [];
    try {
      await this.#db.insertInto('audit_events').values(batch).execute();
    } catch (error) {
      this.#onError(error);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
