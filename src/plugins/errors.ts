import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OAuthError } from '../oauth/errors.ts';

const PAGE_PREFIXES = ['/accounts/', '/o/device', '/o/authorize'];

function isPage(request: FastifyRequest): boolean {
  const url = request.url.split('?')[0];
  return url === '/' || PAGE_PREFIXES.some((prefix) => url.startsWith(prefix) && !url.startsWith('/o/device-authorization'));
}

// PostgreSQL SQLSTATE codes of a lost or refused connection: admin shutdown,
// crash shutdown, cannot connect now, connection exceptions, too many connections.
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004', '53300']);
const UNAVAILABLE_MESSAGES = /Connection terminated|ECONNREFUSED|ECONNRESET|timeout exceeded when trying to connect|Client has encountered a connection error/;

/**
 * Tells whether an error means the database is unreachable for now, so the
 * request may be retried: the pool replaces broken connections on its own.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === 'string' && UNAVAILABLE_SQLSTATES.has(code)) return true;
  return UNAVAILABLE_MESSAGES.test(String((error as Error)?.message ?? ''));
}

/** Maps errors Fastify raises before a handler runs to an OAuth error with the same meaning. */
function translateFrameworkError(error: FastifyError): OAuthError | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      // Form-only OAuth endpoints reject other types before parsing, so this is a JSON
      // or page route: naming form encoding as the expected type would mislead.
      return new OAuthError('invalid_request', 'This endpoint does not accept the Content-Type of the request', {
        status: 415,
      });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OAuthError('invalid_request', 'The request body is too large', { status: 413 });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new OAuthError('invalid_request', 'The request body could not be parsed');
    case 'FST_ERR_VALIDATION':
      return new OAuthError('invalid_request', error.message);
    default:
      break;
  }
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return new OAuthError('invalid_request', error.message, { status: error.statusCode });
  }
  return undefined;
}

async function sendError(request: FastifyRequest, reply: FastifyReply, error: OAuthError): Promise<void> {
  reply.status(error.status).headers(error.headers).header('cache-control', 'no-store');

  if (isPage(request)) {
    await reply.view('error', { title: 'Something went wrong', message: error.status >= 500 ? 'Please try again later.' : error.description });
    return;
  }
  await reply.send(error.toJSON());
}

/**
 * Sends every failure in the RFC's terms: an OAuthError as its JSON body, or
 * as an error page on browser routes. Anything unexpected becomes a bare
 * `server_error`, with the stack only in the log.
 */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler(async (raw: FastifyError | OAuthError, request, reply) => {
    let error = raw instanceof OAuthError ? raw : translateFrameworkError(raw);

    if (error === undefined && isDatabaseUnavailable(raw)) {
      request.log.warn({ err: raw }, 'database unavailable; responded with 503');
      error = new OAuthError('temporarily_unavailable', 'The service is briefly unavailable; retry in a moment', {
        status: 503,
        headers: { 'retry-after': '1' },
      });
    } else if (error === undefined) {
      request.log.error({ err: raw }, 'request failed');
      error = new OAuthError('server_error', 'Internal error', { status: 500 });
    } else if (error.detail !== undefined) {
      request.log.info({ error: error.code, detail: error.detail }, 'request rejected');
    }
    await sendError(request, reply, error);
  });

  app.setNotFoundHandler(async (request, reply) => {
    await sendError(request, reply, new OAuthError('invalid_request', `No route for ${request.method} ${request.url.split('?')[0]}`, { status: 404 }));
  });
}
