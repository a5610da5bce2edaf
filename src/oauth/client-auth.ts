import type { Client } from '../db/schema.ts';
import { lookupClient } from './clients.ts';
import type { OAuthContext } from './context.ts';
import { OAuthError, invalidRequest } from './errors.ts';
import type { Parameters } from './parameters.ts';
import { constantTimeEqual, sha256Hex } from './secrets.ts';

interface PresentedCredentials {
  clientId: string;
  clientSecret: string | undefined;
  method: 'client_secret_basic' | 'client_secret_post' | 'none';
}

/**
 * The challenge of every invalid_client 401, whichever method the client tried:
 * RFC 9110 section 15.5.2 requires a 401 to name a scheme, and RFC 6749
 * section 5.2 requires one after a failed Basic authentication.
 */
export const CLIENT_CHALLENGE = { 'www-authenticate': 'Basic realm="speedgate"' };

function invalidClient(detail: string): OAuthError {
  return new OAuthError('invalid_client', 'Client authentication failed', { status: 401, detail, headers: CLIENT_CHALLENGE });
}

// RFC 6749 section 2.3.1: both halves are form-urlencoded before Base64.
function decodeFormComponent(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    throw invalidRequest('The Authorization header has invalid percent-encoding');
  }
}

function readBasicCredentials(header: string): PresentedCredentials {
  const match = /^Basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i.exec(header);
  if (match === null) throw invalidRequest('The Authorization header must use the Basic scheme');

  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) throw invalidRequest('The Authorization header must contain client_id:client_secret');

  return {
    clientId: decodeFormComponent(decoded.slice(0, colon)),
    clientSecret: decodeFormComponent(decoded.slice(colon + 1)),
    method: 'client_secret_basic',
  };
}

function readCredentials(parameters: Parameters, authorization: string | undefined): PresentedCredentials {
  if (authorization !== undefined && /^basic\s/i.test(authorization)) {
    const basic = readBasicCredentials(authorization);
    if (parameters.client_secret !== undefined) {
      throw invalidRequest('Use one client authentication method, not both Basic and client_secret');
    }
    if (parameters.client_id !== undefined && parameters.client_id !== basic.clientId) {
      throw invalidRequest('The client_id parameter does not match the Authorization header');
    }
    return basic;
  }

  if (parameters.client_id === undefined) {
    throw invalidClient('no client_id and no Basic credentials');
  }
  if (parameters.client_secret !== undefined) {
    return { clientId: parameters.client_id, clientSecret: parameters.client_secret, method: 'client_secret_post' };
  }
  return { clientId: parameters.client_id, clientSecret: undefined, method: 'none' };
}

/**
 * Authenticates the client of a token-endpoint request: a confidential client
 * by `client_secret_basic` or `client_secret_post`, a public client by its
 * `client_id` alone (RFC 6749 section 2.3).
 */
export async function authenticateClient(
  context: OAuthContext,
  parameters: Parameters,
  authorization: string | undefined,
): Promise<Client> {
  const presented = readCredentials(parameters, authorization);
  const client = await lookupClient(context, presented.clientId);

  if (presented.clientSecret === undefined) {
    if (client === undefined) throw invalidClient(`unknown client ${presented.clientId}`);
    if (client.secret_hash !== null) throw invalidClient(`client ${client.id} sent no secret`);
    return client;
  }

  // Hash even for an unknown client, so the response time does not reveal which ids exist.
  const presentedHash = sha256Hex(presented.clientSecret);
  const storedHash = client?.secret_hash ?? '';
  const matches = constantTimeEqual(presentedHash, storedHash);

  if (client === undefined) throw invalidClient(`unknown client ${presented.clientId}`);
  if (client.secret_hash === null) throw invalidClient(`public client ${client.id} sent a secret`);
  if (!matches) throw invalidClient(`wrong secret for client ${client.id}`);
  return client;
}
