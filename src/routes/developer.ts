import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import type { Client, User } from '../db/schema.ts';
import { GRANT_TYPES, deleteClient, registerClient, replaceClientSecret, updateClient } from '../oauth/clients.ts';
import { OAuthError } from '../oauth/errors.ts';
import type { Parameters } from '../oauth/parameters.ts';
import { randomToken, sha256Hex } from '../oauth/secrets.ts';
import { csrfTokenFor, currentUser, readForm, redirectToLogin, recordEvent } from './web.ts';

/** Grant types offered on the form, by the short name used in field names. */
const GRANT_CHOICES = [
  { short: 'authorization_code', value: GRANT_TYPES.authorizationCode, label: 'Authorization code (web apps, ChatGPT Actions, n8n)' },
  { short: 'refresh_token', value: GRANT_TYPES.refreshToken, label: 'Refresh token' },
  { short: 'device_code', value: GRANT_TYPES.deviceCode, label: 'Device code (command-line tools, TVs)' },
  { short: 'client_credentials', value: GRANT_TYPES.clientCredentials, label: 'Client credentials (server to server, confidential only)' },
];

const REGISTRATION_LABELS: Record<string, string> = {
  operator: 'registered by an operator',
  dynamic: 'registered dynamically (RFC 7591)',
  metadata_document: 'client ID metadata document',
};

interface AppForm {
  name: string;
  redirectUris: string;
  grantTypes: string[];
  scopes: string[];
  confidential: boolean;
  authMethod: string;
}

function readAppForm(form: Parameters): AppForm {
  return {
    name: form.name ?? '',
    redirectUris: form.redirect_uris ?? '',
    grantTypes: GRANT_CHOICES.filter((choice) => form[`grant:${choice.short}`] === 'on').map((choice) => choice.value),
    scopes: Object.keys(form).filter((field) => field.startsWith('scope:') && form[field] === 'on').map((field) => field.slice(6)),
    confidential: form.client_type === 'confidential',
    authMethod: form.auth_method === 'client_secret_post' ? 'client_secret_post' : 'client_secret_basic',
  };
}

function formFromClient(client: Client): AppForm {
  return {
    name: client.name,
    redirectUris: client.redirect_uris.join('\n'),
    grantTypes: client.grant_types,
    scopes: client.scopes,
    confidential: client.secret_hash !== null,
    authMethod: client.token_endpoint_auth_method,
  };
}

function splitLines(text: string): string[] {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== '');
}

/** Registers `/accounts/developer/`: register, edit, rotate the secret of and delete OAuth applications. */
export default async function developerRoutes(app: FastifyInstance): Promise<void> {
  const { db, config, scopes } = app.speedgate;

  async function requireUser(request: FastifyRequest, reply: FastifyReply): Promise<User | undefined> {
    const user = await currentUser(request);
    if (user === undefined) redirectToLogin(request, reply);
    return user;
  }

  // Users manage their own applications; an administrator manages every one.
  async function findManagedClient(user: User, id: string): Promise<Client> {
    const client = id.length > 300 ? undefined : await db.selectFrom('clients').selectAll().where('id', '=', id).executeTakeFirst();
    if (client === undefined || (!user.is_admin && client.owner_id !== user.id)) {
      throw new OAuthError('invalid_request', 'No application with this id among the ones you manage', { status: 404 });
    }
    return client;
  }

  function viewModel(request: FastifyRequest, reply: FastifyReply, user: User, extra: Record<string, unknown>) {
    return {
      user,
      csrfToken: csrfTokenFor(request, reply),
      grantChoices: GRANT_CHOICES,
      scopeChoices: scopes.grantableNames().map((name) => ({ name, description: scopes.get(name)?.description ?? name })),
      ...extra,
    };
  }

  async function renderList(request: FastifyRequest, reply: FastifyReply, user: User, extra: Record<string, unknown> = {}, status = 200) {
    const clients = await db
      .selectFrom('clients')
      .leftJoin('users', 'users.id', 'clients.owner_id')
      .select(['clients.id', 'clients.name', 'clients.registration_type', 'clients.secret_hash', 'clients.created_at', 'users.email as ownerEmail'])
      .$if(!user.is_admin, (query) => query.where('clients.owner_id', '=', user.id))
      .orderBy('clients.created_at', 'desc')
      .limit(500)
      .execute();

    const applications = clients.map((client) => ({
      id: client.id,
      name: client.name,
      type: client.secret_hash === null ? 'public' : 'confidential',
      origin: REGISTRATION_LABELS[client.registration_type] ?? client.registration_type,
      owner: client.ownerEmail ?? 'no owner',
    }));
    const form: AppForm = { name: '', redirectUris: '', grantTypes: [GRANT_TYPES.authorizationCode, GRANT_TYPES.refreshToken], scopes: [], confidential: true, authMethod: 'client_secret_basic' };
    return reply
      .status(status)
      .header('cache-control', 'no-store')
      .view('developer', viewModel(request, reply, user, { title: 'Your OAuth applications', applications, form, ...extra }));
  }

  async function renderApp(request: FastifyRequest, reply: FastifyReply, user: User, client: Client, extra: Record<string, unknown> = {}, status = 200) {
    const tokens = await db
      .selectFrom('grants')
      .select(sql<string>`count(*)`.as('active'))
      .where('client_id', '=', client.id)
      .where('revoked_at', 'is', null)
      .executeTakeFirstOrThrow();
    return reply.status(status).header('cache-control', 'no-store').view('developer-app', viewModel(request, reply, user, {
      title: client.name,
      client: {
        id: client.id,
        name: client.name,
        type: client.secret_hash === null ? 'public' : 'confidential',
        authMethod: client.token_endpoint_auth_method,
        origin: REGISTRATION_LABELS[client.registration_type] ?? client.registration_type,
        activeAuthorizations: Number(tokens.active),
      },
      form: formFromClient(client),
      ...extra,
    }));
  }

  app.get('/accounts/developer/', async (request, reply) => {
    const user = await requireUser(request, reply);
    if (user === undefined) return reply;
    return renderList(request, reply, user);
  });

  app.post('/accounts/developer/', async (request, reply) => {
    const user = await requireUser(request, reply);
    if (user === undefined) return reply;

    const form = readAppForm(readForm(request, ['redirect_uris']));
    try {
      const { client, clientSecret } = await registerClient(db, scopes, {
        name: form.name,
        grantTypes: form.grantTypes,
        redirectUris: splitLines(form.redirectUris),
        scopes: form.scopes.length === 0 ? undefined : form.scopes,
        tokenEndpointAuthMethod: form.confidential ? (form.authMethod as 'client_secret_basic' | 'client_secret_post') : 'none',
        registrationType: 'operator',
        ownerId: user.id,
      }, config.now());

      recordEvent(request, 'client_registered', { userId: user.id, clientId: client.id }, 'application registered on the developer page');
      return renderApp(request, reply, user, client, { newSecret: clientSecret, created: true }, 201);
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      return renderList(request, reply, user, { error: error.description, form }, 400);
    }
  });

  app.get<{ Params: { id: string } }>('/accounts/developer/:id/', async (request, reply) => {
    const user = await requireUser(request, reply);
    if (user === undefined) return reply;
    return renderApp(request, reply, user, await findManagedClient(user, request.params.id));
  });

  app.post<{ Params: { id: string } }>('/accounts/developer/:id/', async (request, reply) => {
    const user = await requireUser(request, reply);
    if (user === undefined) return reply;

    const client = await findManagedClient(user, request.params.id);
    const form = readAppForm(readForm(request, ['redirect_uris']));
    try {
      const updated = await updateClient(db, scopes, client, {
        name: form.name,
        grantTypes: form.grantTypes,
        redirectUris: splitLines(form.redirectUris),
        // As on the register form, no ticked scope means every grantable scope.
        scopes: form.scopes.length === 0 ? undefined : form.scopes,
        tokenEndpointAuthMethod: client.secret_hash === null ? 'none' : (form.authMethod as 'client_secret_basic' | 'client_secret_post'),
        registrationType: client.registration_type,
        metadata: client.metadata,
      });
      return renderApp(request, reply, user, updated, { saved: true });
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      return renderApp(request, reply, user, client, { error: error.description, form }, 400);
    }
  });

  app.post<{ Params: { id: string } }>('/accounts/developer/:id/secret/', async (request, reply) => {
    const user = await requireUser(request, reply);
    if (user === undefined) return reply;

    const client = await findManagedClient(user, request.params.id);
    readForm(request);
    if (client.secret_hash === null) throw new OAuthError('invalid_request', 'A public client has no secret to rotate');

    // The old secret stops working at once: rotate after the new one is deployed.
    const secret = `sgs_${randomToken(32)}`;
    await replaceClientSecret(db, client.id, sha256Hex(secret));
    recordEvent(request, 'client_secret_rotated', { userId: user.id, clientId: client.id }, 'client secret rotated');
    return renderApp(request, reply, user, client, { newSecret: secret });
  });

  app.get<{ Params: { id: string } }>('/accounts/developer/:id/delete/', async (request, reply) => {
    const user = await requireUser(request, reply);
    if (user === undefined) return reply;

    const client = await findManagedClient(user, request.params.id);
    return reply.header('cache-control', 'no-store').view('developer-delete', viewModel(request, reply, user, { title: `Delete ${client.name}`, client }));
  });

  app.post<{ Params: { id: string } }>('/accounts/developer/:id/delete/', async (request, reply) => {
    const user = await requireUser(request, reply);
    if (user === undefined) return reply;

    const client = await findManagedClient(user, request.params.id);
    readForm(request);
    // Deleting the client deletes its grants and refresh tokens (foreign keys cascade),
    // and the API rejects access tokens whose grant no longer exists.
    await deleteClient(db, client.id);
    recordEvent(request, 'client_deleted', { userId: user.id, clientId: client.id }, 'application deleted');
    return reply.redirect('/accounts/developer/', 303);
  });
}
