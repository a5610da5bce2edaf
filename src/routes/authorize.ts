import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { User } from '../db/schema.ts';
import {
  AuthorizationRedirectError,
  validateAuthorizationRequest,
  type AuthorizationRequest,
} from '../oauth/authorization-request.ts';
import { createAuthorizationCode, findConsentedScopes, recordConsent } from '../oauth/consents.ts';
import type { OAuthErrorCode } from '../oauth/errors.ts';
import { readParameters, type Parameters } from '../oauth/parameters.ts';
import { buildRedirect } from '../oauth/redirect-uris.ts';
import { csrfTokenFor, currentUser, readForm, redirectToLogin, recordEvent } from './web.ts';

/** Authorization request parameters the consent form carries through to its POST. */
const CARRIED_PARAMETERS = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
  'resource',
  'prompt',
];

const SCOPE_CHECKBOX_PREFIX = 'grant:';

function pickAuthorizationParameters(form: Parameters): Parameters {
  const picked: Parameters = {};
  for (const name of CARRIED_PARAMETERS) {
    if (form[name] !== undefined) picked[name] = form[name];
  }
  return picked;
}

/** Builds the consent page's Content-Security-Policy, whose form-action admits this server and the client's redirect target. */
function consentPagePolicy(redirectUri: string): string {
  const url = new URL(redirectUri);
  const target = url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : url.protocol;
  return [
    "default-src 'self'",
    "base-uri 'self'",
    `form-action 'self' ${target}`,
    "frame-ancestors 'none'",
    "img-src 'self' data:",
    "object-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
  ].join('; ');
}

function describeRedirectTarget(redirectUri: string): string {
  const url = new URL(redirectUri);
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.host : `${url.protocol}//`;
}

/** Registers the authorization endpoint (RFC 6749 section 3.1) and its consent page. */
export default async function authorizeRoutes(app: FastifyInstance): Promise<void> {
  const context = app.speedgate;
  const { config, scopes } = context;

  function redirectWith(reply: FastifyReply, request: AuthorizationRequest | AuthorizationRedirectError, parameters: Record<string, string | undefined>) {
    // RFC 9207: iss names the server that sent the response, which defeats mix-up attacks.
    const location = buildRedirect(request.redirectUri, { ...parameters, state: request.state, iss: config.issuer });
    return reply.header('cache-control', 'no-store').redirect(location, 303);
  }

  function redirectError(reply: FastifyReply, request: AuthorizationRequest | AuthorizationRedirectError, error: OAuthErrorCode, description: string) {
    return redirectWith(reply, request, { error, error_description: description });
  }

  async function issueCode(reply: FastifyReply, authorization: AuthorizationRequest, user: User, granted: string[]) {
    const code = await createAuthorizationCode(context, authorization, user.id, granted);
    return redirectWith(reply, authorization, { code });
  }

  async function renderConsent(request: FastifyRequest, reply: FastifyReply, authorization: AuthorizationRequest, parameters: Parameters, user: User) {
    const consented = await findConsentedScopes(context.db, user.id, authorization.client.id);
    const scopeRows = authorization.scope.map((name) => ({
      name,
      field: `${SCOPE_CHECKBOX_PREFIX}${name}`,
      description: scopes.get(name)?.description ?? name,
      risk: scopes.get(name)?.risk ?? 'read',
      alreadyGranted: consented.includes(name),
    }));

    return reply
      .header('cache-control', 'no-store')
      .header('content-security-policy', consentPagePolicy(authorization.redirectUri))
      .view('consent', {
        title: `Authorize ${authorization.client.name}`,
        user,
        csrfToken: csrfTokenFor(request, reply),
        clientName: authorization.client.name,
        verified: authorization.client.registration_type === 'operator',
        redirectHost: describeRedirectTarget(authorization.redirectUri),
        scopes: scopeRows,
        hidden: Object.entries(pickAuthorizationParameters(parameters)).map(([name, value]) => ({ name, value })),
      });
  }

  async function handleAuthorizationError(reply: FastifyReply, error: unknown) {
    if (error instanceof AuthorizationRedirectError) return redirectError(reply, error, error.code, error.description);
    throw error;
  }

  app.get('/o/authorize/', async (request, reply) => {
    const parameters = readParameters(request.query);
    try {
      const authorization = await validateAuthorizationRequest(context, parameters);
      const user = await currentUser(request);
      if (user === undefined) {
        if (authorization.prompt === 'none') return redirectError(reply, authorization, 'login_required', 'The user is not signed in');
        return redirectToLogin(request, reply);
      }

      const consented = await findConsentedScopes(context.db, user.id, authorization.client.id);
      const covered = authorization.scope.every((name) => consented.includes(name));
      if (covered && authorization.prompt !== 'consent') return issueCode(reply, authorization, user, authorization.scope);
      if (authorization.prompt === 'none') return redirectError(reply, authorization, 'consent_required', 'The user has not approved these scopes');

      return renderConsent(request, reply, authorization, parameters, user);
    } catch (error) {
      return handleAuthorizationError(reply, error);
    }
  });

  app.post('/o/authorize/', async (request, reply) => {
    const user = await currentUser(request);
    if (user === undefined) return redirectToLogin(request, reply);

    const form = readForm(request);
    try {
      const authorization = await validateAuthorizationRequest(context, pickAuthorizationParameters(form));
      if (form.action !== 'approve') return redirectError(reply, authorization, 'access_denied', 'The user denied the request');

      // The user may untick scopes: the code carries only what stayed ticked.
      const granted = authorization.scope.filter((name) => form[`${SCOPE_CHECKBOX_PREFIX}${name}`] === 'on');
      if (granted.length === 0) return redirectError(reply, authorization, 'access_denied', 'The user approved no scope');

      const decision = { requested: authorization.scope, granted };
      await recordConsent(context.db, user.id, authorization.client.id, decision, config.now());
      recordEvent(request, 'consent_granted', { userId: user.id, clientId: authorization.client.id, detail: granted.join(' ') }, 'consent granted');
      return issueCode(reply, authorization, user, granted);
    } catch (error) {
      return handleAuthorizationError(reply, error);
    }
  });
}
