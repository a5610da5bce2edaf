import type { Client } from '../db/schema.ts';
import type { OAuthContext } from './context.ts';
import { requireParameters, type Parameters } from './parameters.ts';
import { findToken } from './token-lookup.ts';
import { revokeGrant } from './tokens.ts';

/**
 * Revokes a token for the client it was issued to (RFC 7009). Revoking either
 * kind ends the whole authorization, refresh and access tokens together, as
 * section 2.1 permits. An unknown token, or another client's, changes
 * nothing and gets the same empty 200, so the response reveals nothing.
 */
export async function revokeToken(context: OAuthContext, client: Client, parameters: Parameters): Promise<boolean> {
  requireParameters(parameters, ['token']);

  const found = await findToken(context, parameters.token);
  if (found === undefined || found.grant.client_id !== client.id) return false;

  await revokeGrant(context.db, found.grant.id, context.config.now());
  context.audit.record({ event: 'token_revoked', userId: found.grant.user_id, clientId: client.id, detail: found.kind });
  return true;
}
