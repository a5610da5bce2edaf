import type { Kysely } from 'kysely';
import type { Client, Database, RegistrationType } from '../db/schema.ts';
import { OAuthError } from './errors.ts';
import type { ScopeRegistry } from './scopes.ts';
import { randomToken, sha256Hex } from './secrets.ts';

export const GRANT_TYPES = {
  authorizationCode: 'authorization_code',
  refreshToken: 'refresh_token',
  clientCredentials: 'client_credentials',
  deviceCode: 'urn:ietf:params:oauth:grant-type:device_code',
} as const;

export const SUPPORTED_GRANT_TYPES: readonly string[] = Object.values(GRANT_TYPES);

export interface ClientRegistration {
  name: string;
  grantTypes?: string[];
  redirectUris?: string[];
  scopes?: string[];
  confidential?: boolean;
  registrationType: RegistrationType;
  ownerId?: string | null;
}

export interface RegisteredClient {
  client: Client;
  /** The raw secret of a confidential client: shown once, stored only as a hash. */
  clientSecret: string | undefined;
}

const MAX_NAME_LENGTH = 100;
const MAX_REDIRECT_URIS = 20;
const MAX_REDIRECT_URI_LENGTH = 2000;

/**
 * Checks one redirect URI: https, http on a loopback address, or a
 * private-use scheme for native apps (RFC 8252 section 7.1); never a fragment
 * or a scheme that runs code or reads files. Returns an error message or null.
 */
export function checkRedirectUri(uri: string): string | null {
  if (uri.length > MAX_REDIRECT_URI_LENGTH) return `longer than ${MAX_REDIRECT_URI_LENGTH} characters`;

  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return 'not an absolute URI';
  }

  if (url.hash !== '' || uri.includes('#')) return 'must not contain a fragment';

  const scheme = url.protocol.slice(0, -1);
  if (['javascript', 'data', 'file', 'vbscript', 'blob', 'about'].includes(scheme)) {
    return `the ${scheme}: scheme is not allowed`;
  }
  if (scheme === 'https') return null;
  if (scheme === 'http') {
    const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
    return loopback ? null : 'http is allowed only for loopback addresses; use https';
  }
  // RFC 8252 section 7.1: private-use schemes are reverse domain names.
  return scheme.includes('.') ? null : 'a private-use scheme must be a reverse domain name such as com.example.app';
}

function validateRegistration(registration: ClientRegistration, scopes: ScopeRegistry): Required<ClientRegistration> {
  const name = registration.name.trim();
  if (name === '' || name.length > MAX_NAME_LENGTH) {
    throw new OAuthError('invalid_client_metadata', `client_name must be 1 to ${MAX_NAME_LENGTH} characters`);
  }

  const grantTypes = [...new Set(registration.grantTypes ?? [GRANT_TYPES.deviceCode, GRANT_TYPES.refreshToken])];
  const unsupported = grantTypes.filter((grant) => !SUPPORTED_GRANT_TYPES.includes(grant));
  if (grantTypes.length === 0 || unsupported.length > 0) {
    throw new OAuthError('invalid_client_metadata', `Unsupported grant_types: ${unsupported.join(', ') || '(none)'}`);
  }

  const confidential = registration.confidential ?? false;
  if (grantTypes.includes(GRANT_TYPES.clientCredentials) && !confidential) {
    throw new OAuthError('invalid_client_metadata', 'client_credentials requires a confidential client');
  }

  const redirectUris = [...new Set(registration.redirectUris ?? [])];
  if (redirectUris.length > MAX_REDIRECT_URIS) {
    throw new OAuthError('invalid_redirect_uri', `At most ${MAX_REDIRECT_URIS} redirect_uris are allowed`);
  }
  for (const uri of redirectUris) {
    const problem = checkRedirectUri(uri);
    if (problem !== null) throw new OAuthError('invalid_redirect_uri', `redirect_uri ${uri}: ${problem}`);
  }
  if (grantTypes.includes(GRANT_TYPES.authorizationCode) && redirectUris.length === 0) {
    throw new OAuthError('invalid_redirect_uri', 'authorization_code requires at least one redirect_uri');
  }

  const allowedScopes =
    registration.scopes === undefined ? scopes.grantableNames() : scopes.parse(registration.scopes.join(' '));

  return {
    name,
    grantTypes,
    redirectUris,
    scopes: allowedScopes,
    confidential,
    registrationType: registration.registrationType,
    ownerId: registration.ownerId ?? null,
  };
}

/** Validates and stores a new client. Throws OAuthError naming the invalid field. */
export async function registerClient(
  db: Kysely<Database>,
  scopes: ScopeRegistry,
  registration: ClientRegistration,
  now: Date,
): Promise<RegisteredClient> {
  const valid = validateRegistration(registration, scopes);
  const clientSecret = valid.confidential ? `sgs_${randomToken(32)}` : undefined;

  const client = await db
    .insertInto('clients')
    .values({
      id: randomToken(18),
      name: valid.name,
      secret_hash: clientSecret === undefined ? null : sha256Hex(clientSecret),
      token_endpoint_auth_method: valid.confidential ? 'client_secret_basic' : 'none',
      redirect_uris: JSON.stringify(valid.redirectUris),
      grant_types: JSON.stringify(valid.grantTypes),
      scopes: JSON.stringify(valid.scopes),
      registration_type: valid.registrationType,
      owner_id: valid.ownerId,
      created_at: now,
    })
    .returningAll()
    .executeTakeFirstOrThrow();

  return { client, clientSecret };
}

export async function findClient(db: Kysely<Database>, clientId: string): Promise<Client | undefined> {
  return db.selectFrom('clients').selectAll().where('id', '=', clientId).executeTakeFirst();
}
