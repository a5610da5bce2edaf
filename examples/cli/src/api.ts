import { CliError } from './errors.ts';
import { asObject, requestJson, type JsonResponse } from './http.ts';
import type { TokenSource } from './token-source.ts';

/** The profile that `GET /api/v1/me/` returns. */
export interface Profile {
  id: string;
  email: string;
  name: string;
}

/** The path of the signed-in user's profile. The token needs the read:profile scope. */
export const PROFILE_PATH = '/api/v1/me/';

function describeApiError(body: unknown): string {
  const fields = asObject(body);
  if (typeof fields.error_description === 'string') return fields.error_description;
  return typeof fields.error === 'string' ? fields.error : 'no error description';
}

function forbiddenMessage(tokens: TokenSource, path: string, body: unknown): string {
  const { error, scope } = asObject(body);
  if (error === 'insufficient_scope' && typeof scope === 'string' && scope !== '') {
    return tokens.missingScopeMessage(scope);
  }
  return `GET ${path} was forbidden (HTTP 403): ${describeApiError(body)}`;
}

function checkApiResponse(tokens: TokenSource, path: string, response: JsonResponse): unknown {
  const { status, body } = response;
  if (status >= 200 && status < 300) return body;

  if (status === 401) throw new CliError(tokens.rejectedMessage(describeApiError(body)));
  if (status === 403) throw new CliError(forbiddenMessage(tokens, path, body));
  throw new CliError(`GET ${path} failed with HTTP ${status}: ${describeApiError(body)}`);
}

/**
 * Sends an authenticated GET to the API and returns the JSON body. After a
 * 401 it renews the token once and retries, since the server may have expired
 * or revoked the token before its stored expiry.
 */
export async function getJson(tokens: TokenSource, path: string): Promise<unknown> {
  const url = `${tokens.server}${path}`;
  const send = async () => {
    const authorization = `Bearer ${await tokens.accessToken()}`;
    return requestJson(url, { headers: { authorization } });
  };

  let response = await send();
  if (response.status === 401 && (await tokens.renew())) {
    response = await send();
  }
  return checkApiResponse(tokens, path, response);
}

/** Checks that a `GET /api/v1/me/` body has the fields the CLI prints. */
export function parseProfile(body: unknown): Profile {
  const { id, name, email } = asObject(body);
  if (typeof id !== 'string' || typeof name !== 'string' || typeof email !== 'string') {
    throw new CliError('The profile response lacks id, name or email');
  }
  return { id, name, email };
}
