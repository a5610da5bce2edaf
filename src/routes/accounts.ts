import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createSession, deleteSession } from '../accounts/sessions.ts';
import { AccountError, authenticateUser, createUser, normalizeEmail } from '../accounts/users.ts';
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
  recordEvent,
} from './web.ts';

/** Failed logins allowed per address and email in one window. */
const LOGIN_ATTEMPTS = 10;
/** Failed logins allowed per address, whatever the account, in one window. */
const LOGIN_FAILURES_PER_ADDRESS = 50;
/** Failed logins on one account, from anywhere, after which each attempt is slowed down. */
const LOGIN_FAILURES_BEFORE_DELAY = 5;
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
  const { db, config, rateLimiter } = app.speedgate;

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
    const limit = await rateLimiter.hit(limitKey, LOGIN_ATTEMPTS, LOGIN_WINDOW_SECONDS);
    if (!limit.allowed) {
      reply.header('retry-after', String(limit.retryAfterSeconds));
      const error = `Too many sign-in attempts. Try again in ${Math.ceil(limit.retryAfterSeconds / 60)} minutes.`;
      return renderForm(request, reply, { template: 'login', title: 'Sign in', next, email, error }, 429);
    }

    const addressKey = `login-failures:ip:${request.ip}`;
    if (await rateLimiter.isLimited(addressKey, LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_SECONDS)) {
      reply.header('retry-after', String(LOGIN_WINDOW_SECONDS));
      const error = 'Too many failed sign-ins from your network. Try again in 15 minutes.';
      return renderForm(request, reply, { template: 'login', title: 'Sign in', next, email, error }, 429);
    }

    // Failures on one account from many addresses slow each attempt down
    // rather than lock the account, so an attacker cannot lock its owner out.
    const accountKey = `login-failures:account:${sha256Hex(email)}`;
    if (await rateLimiter.isLimited(accountKey, LOGIN_FAILURES_BEFORE_DELAY, LOGIN_WINDOW_SECONDS)) {
      await new Promise((resolve) => setTimeout(resolve, config.loginFailureDelayMs));
    }

    const user = await authenticateUser(db, email, form.password ?? '');
    if (user === undefined) {
      await rateLimiter.hit(addressKey, LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_SECONDS);
      await rateLimiter.hit(accountKey, LOGIN_FAILURES_BEFORE_DELAY, LOGIN_WINDOW_SECONDS);
      const account = await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
      recordEvent(request, 'login_failed', { userId: account?.id }, 'login failed');
      const error = 'The email address or password is incorrect.';
      return renderForm(request, reply, { template: 'login', title: 'Sign in', next, email, error }, 401);
    }

    // A correct password clears the count, so only failures since the last sign-in count.
    await rateLimiter.reset(limitKey, LOGIN_WINDOW_SECONDS);
    recordEvent(request, 'login_succeeded', { userId: user.id }, 'login succeeded');
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

    const limit = await rateLimiter.hit(`signup:ip:${request.ip}`, config.signupRateLimitPerHour, 3600);
    if (!limit.allowed) {
      reply.header('retry-after', String(limit.retryAfterSeconds));
      return renderForm(request, reply, { ...page, error: 'Too many accounts created from your network. Try again later.' }, 429);
    }

    try {
      const user = await createUser(db, { email: form.email ?? '', password: form.password ?? '', name: form.name }, config.now());
      recordEvent(request, 'user_created', { userId: user.id }, 'user signed up');
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
