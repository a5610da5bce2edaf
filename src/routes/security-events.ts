import type { FastifyInstance } from 'fastify';
import { currentUser, redirectToLogin } from './web.ts';

const EVENT_LABELS: Record<string, string> = {
  login_succeeded: 'Signed in',
  login_failed: 'Failed sign-in attempt',
  user_created: 'Account created',
  consent_granted: 'Authorized an application',
  device_approved: 'Approved a device',
  device_denied: 'Denied a device',
  token_issued: 'Tokens issued to an application',
  token_refreshed: 'Tokens refreshed',
  token_revoked: 'Token revoked',
  refresh_token_reuse_detected: 'Reuse of an old refresh token detected; the application was signed out',
  code_reuse_detected: 'Reuse of an authorization code detected; its tokens were revoked',
  access_revoked: 'Revoked an application',
  client_registered: 'Registered an application',
  client_deleted: 'Deleted an application',
  client_secret_rotated: 'Rotated a client secret',
  pat_created: 'Created a personal access token',
  pat_revoked: 'Revoked a personal access token',
  pat_leak_reported: 'A personal access token was reported as leaked and revoked',
};

const SHOWN_EVENTS = 100;

/** Registers `/accounts/security/`, where a user sees the latest security events of their account. */
export default async function securityEventRoutes(app: FastifyInstance): Promise<void> {
  const { db, audit } = app.speedgate;

  app.get('/accounts/security/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    // Events still buffered would be missing from the page the user just acted on.
    await audit.flush();
    const rows = await db
      .selectFrom('audit_events')
      .leftJoin('clients', 'clients.id', 'audit_events.client_id')
      .select(['audit_events.event', 'audit_events.detail', 'audit_events.ip_address', 'audit_events.user_agent', 'audit_events.created_at', 'clients.name as clientName'])
      .where('audit_events.user_id', '=', user.id)
      .orderBy('audit_events.created_at', 'desc')
      .limit(SHOWN_EVENTS)
      .execute();

    const events = rows.map((row) => ({
      label: EVENT_LABELS[row.event] ?? row.event,
      application: row.clientName ?? '',
      detail: row.detail ?? '',
      from: [row.ip_address, row.user_agent].filter((part) => part !== null).join(' · '),
      at: row.created_at.toISOString().replace('T', ' ').slice(0, 19) + ' UTC',
      warning: ['login_failed', 'refresh_token_reuse_detected', 'code_reuse_detected', 'pat_leak_reported'].includes(row.event),
    }));
    return reply.header('cache-control', 'no-store').view('security', { title: 'Security events', user, events });
  });
}
