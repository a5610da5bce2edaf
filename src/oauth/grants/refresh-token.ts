import type { Client } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { sha256Hex } from '../secrets.ts';
import { issueTokens, revokeGrant } from '../tokens.ts';
import { unwrapOutcome, type GrantHandler, type GrantOutcome } from './types.ts';

function narrowScope(context: OAuthContext, granted: string, requested: string | undefined): string {
  if (requested === undefined) return granted;

  const names = context.scopes.parse(requested);
  const grantedNames = granted.split(' ');
  const wider = names.filter((name) => !grantedNames.includes(name));
  if (wider.length > 0) {
    throw new OAuthError('invalid_scope', `The refresh token was not granted the scope ${wider.join(', ')}`);
  }
  if (names.length === 0) throw new OAuthError('invalid_scope', 'The scope parameter names no scope');
  return names.join(' ');
}

async function rotateRefreshToken(context: OAuthContext, client: Client, parameters: Parameters): Promise<GrantOutcome> {
  const now = context.config.now();
  const invalid = new OAuthError('invalid_grant', 'The refresh_token is invalid, expired or revoked');

  return context.db.transaction().execute(async (trx): Promise<GrantOutcome> => {
    const token = await trx
      .selectFrom('refresh_tokens')
      .selectAll()
      .where('token_hash', '=', sha256Hex(parameters.refresh_token))
      .forUpdate()
      .executeTakeFirst();
    if (token === undefined) return { error: invalid };

    const grant = await trx.selectFrom('grants').selectAll().where('id', '=', token.grant_id).executeTakeFirstOrThrow();
    if (grant.client_id !== client.id) return { error: invalid };
    if (grant.revoked_at !== null || token.revoked_at !== null) return { error: invalid };

    // A rotated token coming back means two parties hold the family: end it (RFC 9700 section 4.14.2).
    if (token.rotated_at !== null) {
      await revokeGrant(trx, grant.id, now);
      return { error: invalid };
    }
    if (token.expires_at <= now) return { error: invalid };

    const scope = narrowScope(context, token.scope, parameters.scope);
    await trx.updateTable('refresh_tokens').set({ rotated_at: now }).where('id', '=', token.id).execute();
    return { response: await issueTokens(trx, context, grant, scope, true) };
  });
}

/** The refresh token grant (RFC 6749 section 6) with rotation on every use. */
export const refreshTokenGrant: GrantHandler = {
  grantType: GRANT_TYPES.refreshToken,
  requiredParameters: ['refresh_token'],
  async handle(context, client, parameters) {
    return unwrapOutcome(await rotateRefreshToken(context, client, parameters));
  },
};
