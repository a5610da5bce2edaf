import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { revokeClientAccess } from '../oauth/consents.ts';
import { OAuthError } from '../oauth/errors.ts';
import { csrfTokenFor, currentUser, readForm, redirectToLogin, recordEvent } from './web.ts';

function formatTime(value: Date | string | null): string {
  if (value === null) return 'never';
  return new Date(value).toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

/** `/accounts/applications/`: the apps a user has authorized, each with a revoke button. */
export default async function applicationRoutes(app: FastifyInstance): Promise<void> {
  const { db, config, scopes } = app.speedgate;

  app.get('/accounts/applications/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    const rows = await db
      .selectFrom('consents')
      .innerJoin('clients', 'clients.id', 'consents.client_id')
      .select([
        'clients.id as clientId',
        'clients.name as clientName',
        'consents.scope',
        'consents.created_at as grantedAt',
        (eb) =>
          eb
            .selectFrom('grants')
            .select(sql<Date | null>`max(grants.last_used_at)`.as('lastUsed'))
            .whereRef('grants.client_id', '=', 'consents.client_id')
            .where('grants.user_id', '=', user.id)
            .as('lastUsedAt'),
      ])
      .where('consents.user_id', '=', user.id)
      .orderBy('clients.name')
      .execute();

    const applications = rows.map((row) => ({
      clientId: row.clientId,
      clientName: row.clientName,
      scopes: row.scope.split(' ').map((name) => scopes.get(name)?.description ?? name),
      grantedAt: formatTime(row.grantedAt),
      lastUsedAt: formatTime(row.lastUsedAt ?? null),
    }));

    return reply.header('cache-control', 'no-store').view('applications', {
      title: 'Authorized applications',
      user,
      csrfToken: csrfTokenFor(request, reply),
      applications,
    });
  });

  app.post('/accounts/applications/revoke/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    const form = readForm(request);
    if (form.client_id === undefined) throw new OAuthError('invalid_request', 'Missing required parameter: client_id');

    await revokeClientAccess(db, user.id, form.client_id, config.now());
    recordEvent(request, 'access_revoked', { userId: user.id, clientId: form.client_id }, 'application access revoked');
    return reply.redirect('/accounts/applications/', 303);
  });
}
