import type { Client, Grant } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { resolveClientScope } from '../device-codes.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { resolveResource } from '../resources.ts';
import { createGrant, issueTokens } from '../tokens.ts';
import type { GrantHandler } from './types.ts';

const ORIGIN = 'client_credentials';

/**
 * Issues a client's own access token. These tokens share one authorization per client and resource, so
 * token requests add no rows, and revoking one token stops them all.
 */
async function issueClientToken(context: OAuthContext, client: Client, parameters: Parameters) {
  if (client.secret_hash === null) {
    throw new OAuthError('unauthorized_client', 'client_credentials requires a confidential client');
  }
  const scope = resolveClientScope(context, client, parameters.scope);
  const resource = resolveResource(context.config, parameters.resource);
  const now = context.config.now();

  // After the first request, the authorization comes from the cache: the
  // request then costs a signature and no query (the cache drops it when revoked).
  const { cache } = context;
  const cacheKey = `${client.id} ${resource}`;
  const cached = cache.enabled ? cache.clientGrants.get(cacheKey) : undefined;
  if (cached !== undefined) return issueTokens(context.db, context, cached, scope, false);

  const stamp = cache.stamp();
  const { grant, response } = await context.db.transaction().execute(async (trx) => {
    // The client row lock makes concurrent first requests take turns, so they share one grant.
    await trx.selectFrom('clients').select('id').where('id', '=', client.id).forUpdate().execute();

    let grant: Grant | undefined = await trx
      .selectFrom('grants')
      .selectAll()
      .where('client_id', '=', client.id)
      .where('user_id', 'is', null)
      .where('origin', '=', ORIGIN)
      .where('resource', '=', resource)
      .where('revoked_at', 'is', null)
      .orderBy('created_at', 'desc')
      .executeTakeFirst();
    grant ??= await createGrant(trx, { userId: null, clientId: client.id, scope: client.scopes.join(' '), resource, origin: ORIGIN, now });

    // RFC 6749 section 4.4.3: no refresh token for client credentials.
    return { grant, response: await issueTokens(trx, context, grant, scope, false) };
  });

  cache.store(cache.clientGrants, cacheKey, grant, stamp);
  return response;
}

/** The client credentials grant (RFC 6749 section 4.4) for confidential clients. */
export const clientCredentialsGrant: GrantHandler = {
  grantType: GRANT_TYPES.clientCredentials,
  requiredParameters: [],
  handle: issueClientToken,
};
