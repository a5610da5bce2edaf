import type { OAuthContext } from './context.ts';
import { authenticateClient } from './client-auth.ts';
import { OAuthError } from './errors.ts';
import { grantHandlers } from './grants/index.ts';
import { requireParameters, type Parameters } from './parameters.ts';
import type { TokenResponse } from './tokens.ts';

/**
 * Handles a token request (RFC 6749 section 3.2): authenticate the client,
 * check the grant is supported and allowed for it, then dispatch.
 */
export async function handleTokenRequest(
  context: OAuthContext,
  parameters: Parameters,
  authorization: string | undefined,
): Promise<TokenResponse> {
  requireParameters(parameters, ['grant_type']);

  const handler = grantHandlers.get(parameters.grant_type);
  if (handler === undefined) {
    throw new OAuthError('unsupported_grant_type', `The grant_type ${parameters.grant_type} is not supported`);
  }

  const client = await authenticateClient(context, parameters, authorization);
  if (!client.grant_types.includes(handler.grantType)) {
    throw new OAuthError('unauthorized_client', `The client is not allowed to use the grant_type ${handler.grantType}`);
  }

  requireParameters(parameters, handler.requiredParameters);
  return handler.handle(context, client, parameters);
}
