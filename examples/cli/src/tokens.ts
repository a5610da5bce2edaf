import { CliError } from './errors.ts';
import { oauthFailure, postForm, postOAuthForm } from './http.ts';

export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** The fields of a successful token response (RFC 6749 section 5.1) that the CLI uses. */
export interface TokenSet {
  accessToken: string;
  refreshToken: string | undefined;
  /** Lifetime of the access token in seconds, when the server sent one. */
  expiresIn: number | undefined;
  scope: string | undefined;
}

function parseTokenResponse(body: Record<string, unknown>): TokenSet {
  const { access_token, token_type, refresh_token, expires_in, scope } = body;

  if (typeof access_token !== 'string' || access_token === '') {
    throw new CliError('The token response has no access_token');
  }
  // RFC 6749 section 7.1: a client must not use a token type it does not understand.
  if (typeof token_type !== 'string' || token_type.toLowerCase() !== 'bearer') {
    const received = JSON.stringify(token_type);
    throw new CliError(`The token response has token_type ${received}, but the CLI supports only Bearer`);
  }

  const hasRefreshToken = typeof refresh_token === 'string' && refresh_token !== '';
  const hasExpiry = typeof expires_in === 'number' && expires_in > 0;
  return {
    accessToken: access_token,
    refreshToken: hasRefreshToken ? refresh_token : undefined,
    expiresIn: hasExpiry ? expires_in : undefined,
    scope: typeof scope === 'string' ? scope : undefined,
  };
}

/** Sends a token request for a public client and returns the parsed tokens. */
export async function requestTokens(
  server: string,
  fields: Record<string, string>,
): Promise<TokenSet> {
  return parseTokenResponse(await postOAuthForm(`${server}/o/token/`, fields));
}

/**
 * Exchanges a refresh token for new tokens (RFC 6749 section 6). Speedgate
 * rotates refresh tokens, so the old one stops working once this succeeds.
 */
export async function refreshTokens(
  server: string,
  clientId: string,
  refreshToken: string,
): Promise<TokenSet> {
  const fields = { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId };
  return requestTokens(server, fields);
}

/**
 * Revokes a token for a public client (RFC 7009). The server returns 200 for
 * a token that it does not know as well, so success does not prove that the
 * token existed. Throws NetworkError when the server cannot be reached, and
 * OAuthResponseError or CliError when it rejects the request.
 */
export async function revokeToken(
  server: string,
  clientId: string,
  token: string,
  tokenTypeHint: 'refresh_token' | 'access_token',
): Promise<void> {
  const url = `${server}/o/revoke_token/`;
  const fields = { token, token_type_hint: tokenTypeHint, client_id: clientId };
  const { status, text } = await postForm(url, fields);
  if (status === 200) return;

  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  throw oauthFailure(url, status, body);
}
