import type { Client } from '../db/schema.ts';
import { GRANT_TYPES, lookupClient } from './clients.ts';
import type { OAuthContext } from './context.ts';
import { resolveClientScope } from './device-codes.ts';
import { OAuthError, type OAuthErrorCode } from './errors.ts';
import type { Parameters } from './parameters.ts';
import { isWellFormedPkceValue } from './pkce.ts';
import { matchesRegisteredRedirectUri } from './redirect-uris.ts';
import { resolveResource } from './resources.ts';

/** A validated authorization request (RFC 6749 section 4.1.1 with PKCE and RFC 8707). */
export interface AuthorizationRequest {
  client: Client;
  redirectUri: string;
  /** Whether the request named `redirect_uri`, which the token request must then repeat. */
  redirectUriSent: boolean;
  scope: string[];
  state: string | undefined;
  /** Null only when an operator exempted this confidential client from PKCE and it sent none. */
  codeChallenge: string | null;
  resource: string;
  prompt: string | undefined;
}

/**
 * An error to send back to the client's redirect URI with `state` and `iss`
 * (RFC 6749 section 4.1.2.1, RFC 9207). Any other OAuthError from the
 * authorization endpoint is shown to the user and never redirected.
 */
export class AuthorizationRedirectError extends OAuthError {
  readonly redirectUri: string;
  readonly state: string | undefined;

  constructor(code: OAuthErrorCode, description: string, redirectUri: string, state: string | undefined) {
    super(code, description);
    this.redirectUri = redirectUri;
    this.state = state;
  }
}

async function resolveClientAndRedirect(context: OAuthContext, parameters: Parameters) {
  if (parameters.client_id === undefined) {
    throw new OAuthError('invalid_request', 'The request has no client_id. Ask the application to start the sign-in again.');
  }
  const client = await lookupClient(context, parameters.client_id).catch((error: unknown) => {
    if (error instanceof OAuthError) throw new OAuthError('invalid_request', error.description, { detail: error.detail });
    throw error;
  });
  if (client === undefined) {
    throw new OAuthError('invalid_request', 'The application that sent you here is not registered with this server.', {
      detail: `unknown client_id ${parameters.client_id}`,
    });
  }

  const sent = parameters.redirect_uri;
  if (sent === undefined) {
    // Only an unambiguous registration lets the redirect URI be left out.
    if (client.redirect_uris.length !== 1) {
      throw new OAuthError('invalid_request', 'The request has no redirect_uri, and the application registered more than one.');
    }
    return { client, redirectUri: client.redirect_uris[0], redirectUriSent: false };
  }
  if (!matchesRegisteredRedirectUri(client, sent)) {
    throw new OAuthError('invalid_request', 'The redirect_uri does not match any URI registered for this application.', {
      detail: `client ${client.id} sent unregistered redirect_uri ${sent}`,
    });
  }
  return { client, redirectUri: sent, redirectUriSent: true };
}

function checkPkce(client: Client, parameters: Parameters): string | null {
  const challenge = parameters.code_challenge;
  const exempt = !client.require_pkce && client.secret_hash !== null;
  if (challenge === undefined && exempt && parameters.code_challenge_method === undefined) return null;
  if (challenge === undefined) {
    throw new OAuthError('invalid_request', 'code_challenge is required: this server requires PKCE with S256');
  }
  if (parameters.code_challenge_method !== 'S256') {
    throw new OAuthError('invalid_request', 'code_challenge_method must be S256; plain is not supported');
  }
  if (!isWellFormedPkceValue(challenge)) {
    throw new OAuthError('invalid_request', 'code_challenge must be 43 to 128 characters of base64url');
  }
  return challenge;
}

/**
 * Validates an authorization request. The client and redirect URI come first:
 * until both are known good, errors are thrown as plain OAuthError (shown on
 * a page). After that, errors are AuthorizationRedirectError.
 */
export async function validateAuthorizationRequest(
  context: OAuthContext,
  parameters: Parameters,
): Promise<AuthorizationRequest> {
  const { client, redirectUri, redirectUriSent } = await resolveClientAndRedirect(context, parameters);
  const state = parameters.state;

  try {
    if (parameters.response_type !== 'code') {
      const description = parameters.response_type === undefined ? 'response_type is required and must be code' : 'response_type must be code';
      throw new OAuthError(parameters.response_type === undefined ? 'invalid_request' : 'unsupported_response_type', description);
    }
    if (!client.grant_types.includes(GRANT_TYPES.authorizationCode)) {
      throw new OAuthError('unauthorized_client', 'The client is not allowed to use the authorization code grant');
    }
    const codeChallenge = checkPkce(client, parameters);
    const scope = resolveClientScope(context, client, parameters.scope).split(' ').filter((name) => name !== '');
    if (scope.length === 0) throw new OAuthError('invalid_scope', 'The client may request no scope');
    const resource = resolveResource(context.config, parameters.resource);

    const prompt = parameters.prompt;
    if (prompt !== undefined && !['none', 'consent', 'login'].includes(prompt)) {
      throw new OAuthError('invalid_request', 'prompt must be none, login or consent');
    }
    return { client, redirectUri, redirectUriSent, scope, state, codeChallenge, resource, prompt };
  } catch (error) {
    if (error instanceof OAuthError && !(error instanceof AuthorizationRedirectError)) {
      throw new AuthorizationRedirectError(error.code, error.description, redirectUri, state);
    }
    throw error;
  }
}
