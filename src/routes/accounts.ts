import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createSession, deleteSession } from '../accounts/sessions.ts';
import { AccountError, authenticateUser, createUser, normalizeEmail } from '../accounts/users.ts';
import { countAttempt, resetAttempts } from '../db/rate-limits.ts';
import { sha256Hex } from '../oauth/secrets.ts';
import {
  clearSessionCookie,
  clientAddress,
  csrfTokenFor,
  currentUser,
  readForm,
  readSessionId,
  safeNextPath,
  setSessionCookie,
} from './web.ts';

/** Failed logins allowed per address and email in one window. */
const LOGIN_ATTEMPTS = 10;
const LOGIN_WINDOW_SECONDS = 15 * 60;

interface FormPage {
  template: 'login' | 'signup';
  title: string;
  next: string;
  email?: string;
  name?: string;
  error?: string;
}

async function renderForm(request: FastifyRequest, reply: FastifyReply, page: FormPage, status = 200) {
  const csrfToken = csrfTokenFor(request, reply);
  return reply.status(status).header('cache-control', 'no-store').view(page.template, { ...page, csrfToken, user: undefined });
}

async function startSession(request: FastifyRequest, reply: FastifyReply, userId: string, next: string) {
  const { db, config } = request.server.speedgate;
  const sessionId = await createSession(db, userId, config.now(), config.sessionTtlSeconds, clientAddress(request));
  setSessionCookie(request, reply, sessionId);
  return reply.redirect(next, 303);
}

/** Sign-up, login and logout pages backed by server-side sessions. */
export default async function accountRoutes(app: FastifyInstance): Promise<void> {
  const { db, config } = app.speedgate;

  app.get<{ Querystring: { next?: string } }>('/accounts/login/', async (request, reply) => {
    const next = safeNextPath(request.query.next);
    if ((await currentUser(request)) !== undefined) return reply.redirect(next, 303);
    return renderForm(request, reply, { template: 'login', title: 'Sign in', next });
  });

  app.post('/accounts/login/', async (request, reply) => {
    const form = readForm(request);
    const next = safeNextPath(form.next);
    const email = normalizeEmail(form.email ?? '');

    // Counted per address and email together, so an attacker elsewhere cannot lock the owner out.
    const limitKey = `login:${sha256Hex(`${request.ip}|${email}`)}`;
    const limit = await countAttempt(db, limitKey, LOGIN_ATTEMPTS, LOGIN_WINDOW_SECONDS, config.now());
    if (!limit.allowed) {
      reply.header('retry-after', String(limit.retryAfterSeconds));
      const error = `Too many sign-in attempts. Try again in ${Math.ceil(limit.retryAfterSeconds / 60)} minutes.`;
      return renderForm(request, reply, { template: 'login', title: 'Sign in', next, email, error }, 429);
    }

    const user = await authenticateUser(db, email, form.password ?? '');
    if (user === undefined) {
      request.log.info({ event: 'login_failed' }, 'login failed');
      const error = 'The email address or password is incorrect.';
      return renderForm(request, reply, { template: 'login', title: 'Sign in', next, email, error }, 401);
    }

    // A correct password clears the count, so only failures since the last sign-in count.
    await resetAttempts(db, limitKey);
    request.log.info({ event: 'login_succeeded', userId: user.id }, 'login succeeded');
    return startSession(request, reply, user.id, next);
  });

  app.get<{ Querystring: { next?: string } }>('/accounts/signup/', async (request, reply) => {
    const next = safeNextPath(request.query.next);
    return renderForm(request, reply, { template: 'signup', title: 'Create an account', next });
  });

  app.post('/accounts/signup/', async (request, reply) => {
    const form = readForm(request);
    const next = safeNextPath(form.next);
    const page = { template: 'signup' as const, title: 'Create an account', next, email: form.email, name: form.name };

    try {
      const user = await createUser(db, { email: form.email ?? '', password: form.password ?? '', name: form.name }, config.now());
      request.log.info({ event: 'user_created', userId: user.id }, 'user signed up');
      return await startSession(request, reply, user.id, next);
    } catch (error) {
      if (!(error instanceof AccountError)) throw error;
      return renderForm(request, reply, { ...page, error: error.message }, 400);
    }
  });

  app.get('/accounts/logout/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return reply.redirect('/accounts/login/', 303);
    return reply.view('logout', { title: 'Sign out', user, csrfToken: csrfTokenFor(request, reply) });
  });

  app.post('/accounts/logout/', async (request, reply) => {
    readForm(request);
    const sessionId = readSessionId(request);
    if (sessionId !== undefined) await deleteSession(db, sessionId);

    clearSessionCookie(request, reply);
    return reply.redirect('/accounts/login/', 303);
  });
}
