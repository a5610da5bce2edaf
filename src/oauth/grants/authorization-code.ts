import type { Client } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { verifyCodeChallenge } from '../pkce.ts';
import { checkBoundResource } from '../resources.ts';
import { sha256Hex } from '../secrets.ts';
import { createGrant, issueTokens, revokeGrant } from '../tokens.ts';
import { unwrapOutcome, type GrantHandler, type GrantOutcome } from './types.ts';

async function redeemCode(context: OAuthContext, client: Client, parameters: Parameters): Promise<GrantOutcome> {
  const now = context.config.now();
  const invalid = (description: string) => ({ error: new OAuthError('invalid_grant', description) });

  return context.db.transaction().execute(async (trx): Promise<GrantOutcome> => {
    // The row lock lets only one of many concurrent redemptions see the code unused.
    const code = await trx
      .selectFrom('authorization_codes')
      .selectAll()
      .where('code_hash', '=', sha256Hex(parameters.code))
      .forUpdate()
      .executeTakeFirst();

    if (code === undefined) return invalid('The authorization code is invalid');
    if (code.client_id !== client.id) return invalid('The authorization code was issued to another client');

    // RFC 6749 section 4.1.2: a code used twice revokes what the first use issued.
    if (code.consumed_at !== null) {
      if (code.grant_id !== null) await revokeGrant(trx, code.grant_id, now);
      context.audit.record({ event: 'code_reuse_detected', userId: code.user_id, clientId: client.id });
      return invalid('The authorization code has already been used');
    }
    if (code.expires_at <= now) return invalid('The authorization code has expired');

    const verifier = parameters.code_verifier;
    if (code.code_challenge === null) {
      // RFC 9700 section 2.1.1: a verifier without a challenge is a PKCE downgrade attempt.
      if (verifier !== undefined) return invalid('A code_verifier was sent, but the authorization request had no code_challenge');
    } else if (verifier === undefined) {
      return { error: new OAuthError('invalid_request', 'Missing required parameter: code_verifier') };
    } else if (!verifyCodeChallenge(verifier, code.code_challenge)) {
      return invalid('The code_verifier does not match the code_challenge');
    }
    const redirectUri = parameters.redirect_uri;
    if (code.redirect_uri_sent && redirectUri === undefined) {
      return { error: new OAuthError('invalid_request', 'Missing required parameter: redirect_uri') };
    }
    if (redirectUri !== undefined && redirectUri !== code.redirect_uri) {
      return invalid('The redirect_uri does not match the authorization request');
    }

    checkBoundResource(context.config, parameters.resource, code.resource);

    const grant = await createGrant(trx, {
      userId: code.user_id,
      clientId: client.id,
      scope: code.scope,
      resource: code.resource,
      origin: 'authorization_code',
      now,
    });
    await trx
      .updateTable('authorization_codes')
      .set({ consumed_at: now, grant_id: grant.id })
      .where('id', '=', code.id)
      .execute();

    const withRefreshToken = client.grant_types.includes(GRANT_TYPES.refreshToken);
    context.audit.record({ event: 'token_issued', userId: code.user_id, clientId: client.id, detail: `authorization_code: ${code.scope}` });
    return { response: await issueTokens(trx, context, grant, code.scope, withRefreshToken) };
  });
}

/** The authorization code grant's token request (RFC 6749 section 4.1.3) with PKCE (RFC 7636). */
export const authorizationCodeGrant: GrantHandler = {
  grantType: GRANT_TYPES.authorizationCode,
  // code_verifier is required too, unless an operator exempted this confidential client from PKCE.
  requiredParameters: ['code'],
  async handle(context, client, parameters) {
    return unwrapOutcome(await redeemCode(context, client, parameters));
  },
};
