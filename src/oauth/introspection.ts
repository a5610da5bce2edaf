import type { Client } from '../db/schema.ts';
import { CLIENT_CHALLENGE } from './client-auth.ts';
import type { OAuthContext } from './context.ts';
import { OAuthError } from './errors.ts';
import { requireParameters, type Parameters } from './parameters.ts';
import { findToken } from './token-lookup.ts';

/** An RFC 7662 section 2.2 introspection response. */
export type IntrospectionResponse =
  | { active: false }
  | {
      active: true;
      token_type: 'Bearer' | 'refresh_token';
      /** Kind of Speedgate token, because PATs and access tokens are both sent as Bearer. */
      token_kind?: 'access_token' | 'refresh_token' | 'personal_access_token';
      scope: string;
      /** Absent for a personal access token, which no client requested. */
      client_id?: string;
      sub: string;
      iss: string;
      aud?: string;
      exp?: number;
      iat: number;
      jti?: string;
    };

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

/** Describes token kinds that the protocol core does not issue, such as personal access tokens. */
export type ExtraIntrospection = (raw: string) => Promise<IntrospectionResponse | undefined>;

/**
 * Describes a token to a confidential client, typically a resource server.
 * Revoked, expired, rotated and unknown tokens are all just inactive.
 * `extra` is called first, and its result is used when it returns one.
 */
export async function introspectToken(
  context: OAuthContext,
  client: Client,
  parameters: Parameters,
  extra?: ExtraIntrospection,
): Promise<IntrospectionResponse> {
  if (client.secret_hash === null) {
    throw new OAuthError('invalid_client', 'Introspection requires a confidential client', { status: 401, headers: CLIENT_CHALLENGE });
  }
  requireParameters(parameters, ['token']);

  const described = await extra?.(parameters.token);
  if (described !== undefined) return described;

  const { config } = context;
  const found = await findToken(context, parameters.token);
  if (found === undefined || found.grant.revoked_at !== null) return { active: false };

  const sub = found.grant.user_id ?? found.grant.client_id;
  if (found.kind === 'access_token') {
    const { claims } = found;
    return {
      active: true,
      token_type: 'Bearer',
      token_kind: 'access_token',
      scope: String(claims.scope),
      client_id: found.grant.client_id,
      sub,
      iss: config.issuer,
      aud: typeof claims.aud === 'string' ? claims.aud : found.grant.resource,
      exp: Number(claims.exp),
      iat: Number(claims.iat),
      jti: claims.jti,
    };
  }

  const { token } = found;
  if (token.revoked_at !== null || token.rotated_at !== null || token.expires_at <= config.now()) return { active: false };
  return {
    active: true,
    token_type: 'refresh_token',
    token_kind: 'refresh_token',
    scope: token.scope,
    client_id: found.grant.client_id,
    sub,
    iss: config.issuer,
    exp: seconds(token.expires_at),
    iat: seconds(token.created_at),
  };
}
