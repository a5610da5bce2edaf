import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { DeviceCode, User } from '../db/schema.ts';
import { findClient } from '../oauth/clients.ts';
import { recordConsent } from '../oauth/consents.ts';
import { decideDeviceCode, findDeviceCode, formatUserCode, normalizeUserCode } from '../oauth/device-codes.ts';
import { sha256Hex } from '../oauth/secrets.ts';
import { csrfTokenFor, currentUser, readForm, readSessionId, redirectToLogin, recordEvent } from './web.ts';

/** Wrong user codes allowed per browser session, and per address, in one window. */
const WRONG_CODES_PER_SESSION = 10;
const WRONG_CODES_PER_ADDRESS = 30;
const WRONG_CODE_WINDOW_SECONDS = 10 * 60;

type Lookup = { row: DeviceCode } | { error: string; status: number };

function describeAge(from: Date, now: Date): string {
  const seconds = Math.max(0, Math.round((now.getTime() - from.getTime()) / 1000));
  if (seconds < 60) return seconds === 1 ? '1 second ago' : `${seconds} seconds ago`;

  const minutes = Math.round(seconds / 60);
  return minutes === 1 ? '1 minute ago' : `${minutes} minutes ago`;
}

/** Registers the RFC 8628 verification page, where a user enters a code, reviews the request and approves or denies it. */
export default async function devicePageRoutes(app: FastifyInstance): Promise<void> {
  const context = app.speedgate;
  const { db, config, scopes, rateLimiter } = context;

  function rateLimitKeys(request: FastifyRequest): string[] {
    const sessionKey = `device-code:session:${sha256Hex(readSessionId(request) ?? '')}`;
    return [sessionKey, `device-code:ip:${request.ip}`];
  }

  async function isBlocked(request: FastifyRequest): Promise<boolean> {
    const [sessionKey, addressKey] = rateLimitKeys(request);
    return (
      (await rateLimiter.isLimited(sessionKey, WRONG_CODES_PER_SESSION, WRONG_CODE_WINDOW_SECONDS)) ||
      (await rateLimiter.isLimited(addressKey, WRONG_CODES_PER_ADDRESS, WRONG_CODE_WINDOW_SECONDS))
    );
  }

  async function countWrongCode(request: FastifyRequest): Promise<void> {
    const [sessionKey, addressKey] = rateLimitKeys(request);
    await rateLimiter.hit(sessionKey, WRONG_CODES_PER_SESSION, WRONG_CODE_WINDOW_SECONDS);
    await rateLimiter.hit(addressKey, WRONG_CODES_PER_ADDRESS, WRONG_CODE_WINDOW_SECONDS);
  }

  async function lookUp(request: FastifyRequest, input: string): Promise<Lookup> {
    const userCode = normalizeUserCode(input);
    const row = userCode === null ? undefined : await findDeviceCode(db, userCode);

    if (row === undefined) {
      await countWrongCode(request);
      request.log.info({ event: 'device_code_wrong' }, 'wrong user code entered');
      return { error: 'That code is not valid. Check the code shown on your device and try again.', status: 400 };
    }
    if (row.expires_at <= config.now()) {
      return { error: 'That code has expired. Start the sign-in on your device again to get a new code.', status: 400 };
    }
    if (row.status !== 'pending') {
      return { error: 'That code has already been used. Start the sign-in on your device again if you need to.', status: 400 };
    }
    return { row };
  }

  async function renderEntry(request: FastifyRequest, reply: FastifyReply, user: User, userCode: string, error?: string, status = 200, viaLink = false) {
    const csrfToken = csrfTokenFor(request, reply);
    return reply
      .status(status)
      .header('cache-control', 'no-store')
      .view('device', { title: 'Connect a device', user, csrfToken, userCode, error, viaLink });
  }

  // A user who followed a verification_uri_complete link did not type the code, so an
  // attacker may have sent the link (RFC 8628 section 5.4). Approving then needs an
  // explicit confirmation that the code matches the one on the user's own device.
  async function renderConfirm(request: FastifyRequest, reply: FastifyReply, user: User, row: DeviceCode, userCode: string, viaLink: boolean, error?: string) {
    const client = await findClient(db, row.client_id);
    const requestedScopes = row.scope
      .split(' ')
      .filter((name) => name !== '')
      .map((name) => ({ name, description: scopes.get(name)?.description ?? name, risk: scopes.get(name)?.risk ?? 'read' }));

    return reply.status(error === undefined ? 200 : 400).header('cache-control', 'no-store').view('device-confirm', {
      title: 'Approve this device?',
      viaLink,
      error,
      user,
      csrfToken: csrfTokenFor(request, reply),
      userCode,
      clientName: client?.name ?? 'Unknown application',
      verified: client?.registration_type === 'operator',
      scopes: requestedScopes,
      requesterIp: row.requester_ip ?? 'unknown',
      requesterUserAgent: row.requester_user_agent ?? 'unknown',
      requestedAgo: describeAge(row.created_at, config.now()),
    });
  }

  app.get<{ Querystring: { user_code?: string } }>('/o/device/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    const prefilled = typeof request.query.user_code === 'string' ? request.query.user_code.slice(0, 20) : '';
    return renderEntry(request, reply, user, prefilled, undefined, 200, prefilled !== '');
  });

  app.post('/o/device/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    const form = readForm(request);
    const input = form.user_code ?? '';

    if (await isBlocked(request)) {
      reply.header('retry-after', String(WRONG_CODE_WINDOW_SECONDS));
      return renderEntry(request, reply, user, '', 'Too many wrong codes. Wait ten minutes and try again.', 429);
    }

    const found = await lookUp(request, input);
    if ('error' in found) return renderEntry(request, reply, user, input.slice(0, 20), found.error, found.status);

    const decision = form.action;
    const viaLink = form.via === 'link';
    const displayCode = formatUserCode(normalizeUserCode(input) ?? '');
    if (decision !== 'approve' && decision !== 'deny') {
      return renderConfirm(request, reply, user, found.row, displayCode, viaLink);
    }
    if (decision === 'approve' && viaLink && form.code_matches !== 'on') {
      const error = 'Confirm that this code matches the one shown on your device before approving.';
      return renderConfirm(request, reply, user, found.row, displayCode, viaLink, error);
    }

    const approved = decision === 'approve';
    const decided = await decideDeviceCode(db, found.row.id, user.id, approved, config.now());
    if (!decided) return renderEntry(request, reply, user, '', 'That code has already been used.', 400);

    // An approved device appears on the applications page, where the user can revoke it.
    if (approved) {
      const scope = found.row.scope.split(' ').filter((name) => name !== '');
      await recordConsent(db, user.id, found.row.client_id, { requested: scope, granted: scope }, config.now());
    }

    recordEvent(request, approved ? 'device_approved' : 'device_denied', { userId: user.id, clientId: found.row.client_id }, 'device authorization decided');
    return reply.header('cache-control', 'no-store').view('device-done', { title: approved ? 'Device connected' : 'Request denied', user, approved });
  });
}
