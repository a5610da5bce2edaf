import type { FastifyReply, FastifyRequest } from 'fastify';
import { createCsrfToken, verifyCsrfToken } from '../accounts/csrf.ts';
import { findSessionUser } from '../accounts/sessions.ts';
import type { AuditEventName } from '../db/audit-log.ts';
import type { User } from '../db/schema.ts';
import { OAuthError } from '../oauth/errors.ts';
import { readParameters, type Parameters } from '../oauth/parameters.ts';
import { randomToken } from '../oauth/secrets.ts';

const ANONYMOUS_CSRF_COOKIE = 'sg_csrf';
const loadedUsers = new WeakMap<FastifyRequest, Promise<User | undefined>>();

function secureCookies(request: FastifyRequest): boolean {
  return request.server.speedgate.config.issuer.startsWith('https:');
}

/** Returns the session cookie's name, prefixed `__Host-` under https so no subdomain can set or read it. */
export function sessionCookieName(request: FastifyRequest): string {
  return secureCookies(request) ? '__Host-sg_session' : 'sg_session';
}

function cookieOptions(request: FastifyRequest, maxAgeSeconds?: number) {
  return {
    path: '/',
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: secureCookies(request),
    signed: true,
    maxAge: maxAgeSeconds,
  };
}

function readSignedCookie(request: FastifyRequest, name: string): string | undefined {
  const raw = request.cookies[name];
  if (raw === undefined) return undefined;

  const result = request.unsignCookie(raw);
  return result.valid && result.value !== null ? result.value : undefined;
}

export function readSessionId(request: FastifyRequest): string | undefined {
  return readSignedCookie(request, sessionCookieName(request));
}

/** Returns the signed-in user of this request, looked up once per request. */
export function currentUser(request: FastifyRequest): Promise<User | undefined> {
  let loaded = loadedUsers.get(request);
  if (loaded === undefined) {
    const sessionId = readSessionId(request);
    const { db, config } = request.server.speedgate;
    loaded = sessionId === undefined ? Promise.resolve(undefined) : findSessionUser(db, sessionId, config.now());
    loadedUsers.set(request, loaded);
  }
  return loaded;
}

export function setSessionCookie(request: FastifyRequest, reply: FastifyReply, sessionId: string): void {
  const ttl = request.server.speedgate.config.sessionTtlSeconds;
  reply.setCookie(sessionCookieName(request), sessionId, cookieOptions(request, ttl));
}

export function clearSessionCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(sessionCookieName(request), cookieOptions(request));
}

// Prefixed like the session cookie: a sibling subdomain that could plant its own
// binding cookie could pair it with a token it fetched itself (login CSRF).
function csrfCookieName(request: FastifyRequest): string {
  return secureCookies(request) ? `__Host-${ANONYMOUS_CSRF_COOKIE}` : ANONYMOUS_CSRF_COOKIE;
}

// Logged in, the session id binds the CSRF token; before that, a random cookie does.
function csrfBinding(request: FastifyRequest): string | undefined {
  return readSessionId(request) ?? readSignedCookie(request, csrfCookieName(request));
}

/** Returns the CSRF token for a form on this page, setting the binding cookie if the browser has none. */
export function csrfTokenFor(request: FastifyRequest, reply: FastifyReply, sessionId?: string): string {
  let binding = sessionId ?? csrfBinding(request);
  if (binding === undefined) {
    binding = randomToken(24);
    reply.setCookie(csrfCookieName(request), binding, cookieOptions(request));
  }
  return createCsrfToken(request.server.speedgate.cookieSecret, binding);
}

/**
 * Reads a submitted form and checks its CSRF token. Throws a 403 when the
 * token is missing or was not issued to this browser. Only the fields named in
 * `multilineFields` (textareas) may contain line breaks.
 */
export function readForm(request: FastifyRequest, multilineFields: readonly string[] = []): Parameters {
  const form = readParameters(request.body, multilineFields);
  const binding = csrfBinding(request);

  if (binding === undefined || !verifyCsrfToken(request.server.speedgate.cookieSecret, binding, form.csrf_token)) {
    throw new OAuthError('access_denied', 'The form has expired or was not sent from this site. Reload the page and try again.', {
      status: 403,
      detail: 'CSRF token missing or invalid',
    });
  }
  return form;
}

/**
 * Returns `next` when it is a path on this server, else `/`. Rejects
 * scheme-relative (`//host`) and backslash forms that browsers treat as
 * another host, so a login link cannot redirect off-site. A repeated query
 * parameter arrives as an array and also gives `/`.
 */
export function safeNextPath(next: unknown): string {
  if (typeof next !== 'string' || !next.startsWith('/')) return '/';
  if (next.startsWith('//') || next.includes('\\') || /[\u0000-\u001f]/.test(next)) return '/';
  return next;
}

/** Sends a browser that is not signed in to the login page, to come back here after. */
export function redirectToLogin(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const next = encodeURIComponent(request.url);
  return reply.redirect(`/accounts/login/?next=${next}`, 303);
}

export function clientAddress(request: FastifyRequest) {
  return { ip: request.ip, userAgent: request.headers['user-agent'] };
}

/**
 * Logs a security event and adds it to the audit log with the request's
 * address and user agent. `fields` must never carry a secret.
 */
export function recordEvent(
  request: FastifyRequest,
  event: AuditEventName,
  fields: { userId?: string | null; clientId?: string | null; detail?: string },
  message: string,
): void {
  request.log.info({ event, userId: fields.userId, clientId: fields.clientId }, message);
  request.server.speedgate.audit.record({
    event,
    ...fields,
    ip: request.ip,
    userAgent: request.headers['user-agent'],
  });
}
