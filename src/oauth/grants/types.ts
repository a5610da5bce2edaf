import type { Client } from '../../db/schema.ts';
import type { OAuthContext } from '../context.ts';
import type { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import type { TokenResponse } from '../tokens.ts';

/** A grant type's token-endpoint handler, called with an authenticated client. */
export interface GrantHandler {
  grantType: string;
  /** Parameters the grant requires besides `grant_type` and client credentials. */
  requiredParameters: readonly string[];
  handle(context: OAuthContext, client: Client, parameters: Parameters): Promise<TokenResponse>;
}

/**
 * The outcome of a grant's transaction. An error is returned rather than
 * thrown when the transaction has state to commit first, such as a new poll
 * interval or a revoked token family.
 */
export type GrantOutcome = { response: TokenResponse } | { error: OAuthError };

export function unwrapOutcome(outcome: GrantOutcome): TokenResponse {
  if ('error' in outcome) throw outcome.error;
  return outcome.response;
}
