import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  createPat,
  listPats,
  revokeLeakedPat,
  revokePat,
  scopesForUser,
} from '../accounts/personal-access-tokens.ts';
import { AccountError } from '../accounts/users.ts';
import type { PersonalAccessToken, User } from '../db/schema.ts';
import { OAuthError } from '../oauth/errors.ts';
import type { Parameters } from '../oauth/parameters.ts';
import { randomToken } from '../oauth/secrets.ts';
import { csrfTokenFor, currentUser, readForm, redirectToLogin, recordEvent } from './web.ts';

const EXPIRY_PRESETS_DAYS = [7, 30, 60, 90];
const SCOPE_CHECKBOX_PREFIX = 'scope:';
/** Tokens that expire within this many days are flagged on the page. */
const EXPIRY_WARNING_DAYS = 7;
/** Leak reports accepted per address in one minute. */
const LEAK_REPORTS_PER_MINUTE = 60;
const MAX_TOKENS_PER_REPORT = 100;

function formatTime(value: Date | null): string {
  return value === null ? '' : value.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

function readExpiry(form: Parameters, now: Date): Date | null {
  const choice = form.expires ?? '30';
  if (choice === 'none') return null;

  if (choice === 'custom') {
    const day = form.expires_on ?? '';
    if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new AccountError('expires', 'Enter the custom expiry date as YYYY-MM-DD');

    // Date parsing rolls a day such as 2027-04-31 over into the next month, so compare it with the input.
    const date = new Date(`${day}T23:59:59Z`);
    if (Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== day) {
      throw new AccountError('expires', `The custom expiry date ${day} does not exist`);
    }
    return date;
  }

  const days = Number(choice);
  if (!EXPIRY_PRESETS_DAYS.includes(days)) throw new AccountError('expires', 'Choose one of the expiry options');
  return new Date(now.getTime() + days * 86_400_000);
}

function describeToken(row: PersonalAccessToken, now: Date) {
  const expired = row.expires_at !== null && row.expires_at <= now;
  const expiresSoon =
    row.revoked_at === null &&
    !expired &&
    row.expires_at !== null &&
    row.expires_at.getTime() - now.getTime() < EXPIRY_WARNING_DAYS * 86_400_000;
  let status = 'active';
  if (row.revoked_at !== null) status = row.revoked_reason === 'leak_report' ? 'revoked: reported as leaked' : 'revoked';
  else if (expired) status = 'expired';

  return {
    id: row.id,
    name: row.name,
    prefix: `${row.display_prefix}…`,
    scope: row.scope.split(' ').join(', '),
    createdAt: formatTime(row.created_at),
    expiresAt: row.expires_at === null ? 'never' : formatTime(row.expires_at),
    expiresSoon,
    active: status === 'active',
    status,
    revokedAt: formatTime(row.revoked_at),
    leakSource: row.leak_source,
    lastUsedAt: row.last_used_at === null ? 'never' : formatTime(row.last_used_at),
    lastUsedFrom: row.last_used_at === null ? '' : `${row.last_used_ip ?? ''} ${row.last_used_user_agent ?? ''}`.trim(),
  };
}

/** Extracts the reported tokens from a form, a JSON object or a JSON array such as secret scanners send. */
function readLeakReport(body: unknown): { token: string; source: string | undefined }[] {
  const entries = Array.isArray(body) ? body : [body];
  if (entries.length === 0 || entries.length > MAX_TOKENS_PER_REPORT) {
    throw new OAuthError('invalid_request', `Report between 1 and ${MAX_TOKENS_PER_REPORT} tokens at once`);
  }

  return entries.map((entry: unknown, index) => {
    const fields = typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>) : {};
    const token = fields.token;
    const source = fields.url ?? fields.source;
    if (typeof token !== 'string' || token.length > 200) {
      throw new OAuthError('invalid_request', `Entry ${index}: token must be a string of at most 200 characters`);
    }
    return { token, source: typeof source === 'string' ? source : undefined };
  });
}

/** Registers the personal access token page and the public leak-report endpoint. */
export default async function personalAccessTokenRoutes(app: FastifyInstance): Promise<void> {
  const { db, config, scopes, rateLimiter } = app.speedgate;

  async function renderPage(request: FastifyRequest, reply: FastifyReply, user: User, extra: Record<string, unknown> = {}, status = 200) {
    const now = config.now();
    const tokens = (await listPats(db, user.id)).map((row) => describeToken(row, now));
    return reply.status(status).header('cache-control', 'no-store').view('tokens', {
      title: 'Personal access tokens',
      user,
      csrfToken: csrfTokenFor(request, reply),
      tokens,
      scopes: scopesForUser(scopes, user).map((scope) => ({ ...scope, field: `${SCOPE_CHECKBOX_PREFIX}${scope.name}` })),
      presets: EXPIRY_PRESETS_DAYS,
      form: { name: '', expires: '30', expiresOn: '', checked: [] as string[] },
      formId: randomToken(16),
      ...extra,
    });
  }

  async function findOwnToken(user: User, id: string) {
    if (!/^[0-9a-f-]{36}$/.test(id)) return undefined;
    return db.selectFrom('personal_access_tokens').selectAll().where('id', '=', id).where('user_id', '=', user.id).executeTakeFirst();
  }

  app.get('/accounts/tokens/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);
    return renderPage(request, reply, user);
  });

  app.post('/accounts/tokens/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    const form = readForm(request);
    const chosen = Object.keys(form)
      .filter((field) => field.startsWith(SCOPE_CHECKBOX_PREFIX) && form[field] === 'on')
      .map((field) => field.slice(SCOPE_CHECKBOX_PREFIX.length));
    const submitted = { name: form.name ?? '', expires: form.expires ?? '30', expiresOn: form.expires_on ?? '', checked: chosen };

    try {
      const now = config.now();
      const { token, row } = await createPat(db, scopes, user, { name: form.name ?? '', scopes: chosen, expiresAt: readExpiry(form, now), formId: form.form_id }, now);
      recordEvent(request, 'pat_created', { userId: user.id, detail: `${row.name} (${row.display_prefix}…)` }, 'personal access token created');
      return renderPage(request, reply, user, { newToken: { value: token, name: row.name } }, 201);
    } catch (error) {
      if (!(error instanceof AccountError)) throw error;
      return renderPage(request, reply, user, { error: error.message, form: submitted }, 400);
    }
  });

  app.get<{ Params: { id: string } }>('/accounts/tokens/:id/revoke/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    const row = await findOwnToken(user, request.params.id);
    if (row === undefined || row.revoked_at !== null) {
      throw new OAuthError('invalid_request', 'No active token with this id among your tokens', { status: 404 });
    }
    return reply.header('cache-control', 'no-store').view('token-revoke', {
      title: 'Revoke token',
      user,
      csrfToken: csrfTokenFor(request, reply),
      token: describeToken(row, config.now()),
    });
  });

  app.post<{ Params: { id: string } }>('/accounts/tokens/:id/revoke/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    readForm(request);
    const revoked = /^[0-9a-f-]{36}$/.test(request.params.id) && (await revokePat(db, user.id, request.params.id, config.now()));
    if (!revoked) throw new OAuthError('invalid_request', 'No active token with this id among your tokens', { status: 404 });

    recordEvent(request, 'pat_revoked', { userId: user.id, detail: request.params.id }, 'personal access token revoked');
    return reply.redirect('/accounts/tokens/', 303);
  });

  // Anyone who finds a leaked token may report it here without authenticating.
  // Every report gets the same 202, so the response reveals nothing about the token.
  app.post('/o/leaked_tokens/', async (request, reply) => {
    const limit = await rateLimiter.hit(`leak-report:${request.ip}`, LEAK_REPORTS_PER_MINUTE, 60);
    if (!limit.allowed) {
      reply.header('retry-after', String(limit.retryAfterSeconds));
      throw new OAuthError('invalid_request', 'Too many reports from this address; retry later', { status: 429 });
    }

    const reports = readLeakReport(request.body);
    for (const report of reports) {
      const owner = await revokeLeakedPat(db, report.token, report.source, config.now());
      if (owner === undefined) continue;

      recordEvent(request, 'pat_leak_reported', { userId: owner.userId, detail: report.source }, 'personal access token revoked after a leak report');
    }
    return reply.status(202).header('cache-control', 'no-store').send({ received: reports.length });
  });
}
