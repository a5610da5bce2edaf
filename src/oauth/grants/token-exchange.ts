import { randomUUID } from 'node:crypto';
import type { Client } from '../../db/schema.ts';
import { GRANT_TYPES } from '../clients.ts';
import type { OAuthContext } from '../context.ts';
import { OAuthError } from '../errors.ts';
import type { Parameters } from '../parameters.ts';
import { loadGrantStatus, verifyAccessTokenCached } from '../grant-status.ts';
import { normalizeResource, resolveResource } from '../resources.ts';
import type { TokenResponse } from '../tokens.ts';
import type { GrantHandler } from './types.ts';

const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

interface ExchangeResponse extends TokenResponse {
  issued_token_type: string;
}

async function verifySubjectToken(context: OAuthContext, raw: string, servedResource: string) {
  let claims;
  try {
    claims = await verifyAccessTokenCached(context, raw, [servedResource]);
  } catch {
    throw new OAuthError('invalid_grant', 'The subject_token is invalid, expired or was not issued for this client\'s resource');
  }

  const grantId = typeof claims.grant_id === 'string' ? claims.grant_id : undefined;
  const grant = grantId === undefined ? undefined : await loadGrantStatus(context, grantId);
  if (grantId === undefined || grant === undefined || grant.revokedAt !== null) {
    throw new OAuthError('invalid_grant', 'The subject_token has been revoked');
  }
  return { claims, grant: { id: grantId, client_id: grant.clientId } };
}

/**
 * Exchanges an access token issued for the resource this client operates
 * (say, an MCP server) for one to another resource (say, the API), so the
 * resource never forwards the token it received (RFC 8693). The new token
 * keeps the authorization, so revoking it stops both, and it never outlives
 * the subject token or carries more scope.
 */
async function exchangeToken(context: OAuthContext, client: Client, parameters: Parameters): Promise<ExchangeResponse> {
  const served = client.metadata.resource === undefined ? undefined : normalizeResource(client.metadata.resource);
  if (client.secret_hash === null || served === undefined) {
    throw new OAuthError('unauthorized_client', 'Only a confidential client that operates a registered resource may exchange tokens');
  }
  if (parameters.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new OAuthError('invalid_request', `subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }

  const { config, keys } = context;
  const { claims, grant } = await verifySubjectToken(context, parameters.subject_token, served);
  const target = resolveResource(config, parameters.resource);

  const granted = String(claims.scope).split(' ');
  const scope = parameters.scope === undefined ? granted : context.scopes.parse(parameters.scope);
  const wider = scope.filter((name) => !granted.includes(name));
  if (wider.length > 0 || scope.length === 0) {
    throw new OAuthError('invalid_scope', `The subject_token was not granted the scope ${wider.join(', ') || '(none)'}`);
  }

  const now = config.now();
  const remaining = Number(claims.exp) - Math.floor(now.getTime() / 1000);
  const lifetime = Math.max(1, Math.min(config.accessTokenTtlSeconds, remaining));
  const accessToken = await keys.signAccessToken(
    {
      iss: config.issuer,
      sub: claims.sub,
      aud: target,
      client_id: grant.client_id,
      scope: scope.join(' '),
      jti: randomUUID(),
      grant_id: grant.id,
      // RFC 8693 section 4.1: the party acting on the subject's behalf.
      act: { sub: client.id },
    },
    now,
    lifetime,
  );

  return {
    access_token: accessToken,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: lifetime,
    scope: scope.join(' '),
  };
}

/** The token exchange grant (RFC 8693) for resource servers of this authorization server. */
export const tokenExchangeGrant: GrantHandler = {
  grantType: GRANT_TYPES.tokenExchange,
  requiredParameters: ['subject_token', 'subject_token_type'],
  handle: exchangeToken,
};
