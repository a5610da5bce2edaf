import type { Kysely } from 'kysely';
import type { Client, ClientMetadata, Database, RegistrationType } from '../db/schema.ts';
import { announceChange } from '../db/invalidation.ts';
import type { OAuthContext } from './context.ts';
import { OAuthError } from './errors.ts';
import type { ScopeRegistry } from './scopes.ts';
import { randomToken, sha256Hex } from './secrets.ts';

export const GRANT_TYPES = {
  authorizationCode: 'authorization_code',
  refreshToken: 'refresh_token',
  clientCredentials: 'client_credentials',
  deviceCode: 'urn:ietf:params:oauth:grant-type:device_code',
  tokenExchange: 'urn:ietf:params:oauth:grant-type:token-exchange',
} as const;

export const SUPPORTED_GRANT_TYPES: readonly string[] = Object.values(GRANT_TYPES);

export const TOKEN_ENDPOINT_AUTH_METHODS = ['none', 'client_secret_basic', 'client_secret_post'] as const;
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

export interface ClientRegistration {
  name: string;
  grantTypes?: string[];
  redirectUris?: string[];
  scopes?: string[];
  /** Shorthand for `client_secret_basic` when `tokenEndpointAuthMethod` is not given. */
  confidential?: boolean;
  tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
  registrationType: RegistrationType;
  ownerId?: string | null;
  metadata?: ClientMetadata;
  /** False lets a confidential client skip PKCE; public clients always need it. */
  requirePkce?: boolean;
  /** Issue an RFC 7592 registration access token, as dynamic registration does. */
  withRegistrationAccessToken?: boolean;
  /** A fixed client_id, such as the URL of a Client ID Metadata Document. */
  clientId?: string;
  /** Update the row with this `clientId` in place if it exists, keeping its grants. */
  replaceExisting?: boolean;
}

export interface RegisteredClient {
  client: Client;
  /** The raw secret of a confidential client: shown once, stored only as a hash. */
  clientSecret: string | undefined;
  /** The raw RFC 7592 registration access token, when one was requested. */
  registrationAccessToken: string | undefined;
}

/** Returns whether the client authenticates with a secret. */
export function isConfidential(client: Client): boolean {
  return client.secret_hash !== null;
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
  if (['ws', 'wss', 'ftp', 'mailto', 'tel', 'sms'].includes(scheme)) return `the ${scheme}: scheme cannot receive a redirect`;
  // RFC 8252 section 7.1 recommends reverse domain names (com.example.app:), but
  // shipped MCP clients register short ones such as cursor://, so any other is accepted.
  return null;
}

type ValidRegistration = Required<Omit<ClientRegistration, 'clientId' | 'confidential' | 'replaceExisting'>> & { clientId?: string };

function validateRegistration(registration: ClientRegistration, scopes: ScopeRegistry): ValidRegistration {
  const name = registration.name.trim();
  if (name === '' || name.length > MAX_NAME_LENGTH) {
    throw new OAuthError('invalid_client_metadata', `client_name must be 1 to ${MAX_NAME_LENGTH} characters`);
  }

  const grantTypes = [...new Set(registration.grantTypes ?? [GRANT_TYPES.deviceCode, GRANT_TYPES.refreshToken])];
  const unsupported = grantTypes.filter((grant) => !SUPPORTED_GRANT_TYPES.includes(grant));
  if (grantTypes.length === 0 || unsupported.length > 0) {
    throw new OAuthError('invalid_client_metadata', `Unsupported grant_types: ${unsupported.join(', ') || '(none)'}`);
  }

  const authMethod = registration.tokenEndpointAuthMethod ?? (registration.confidential ? 'client_secret_basic' : 'none');
  if (!TOKEN_ENDPOINT_AUTH_METHODS.includes(authMethod)) {
    throw new OAuthError('invalid_client_metadata', `Unsupported token_endpoint_auth_method: ${authMethod}`);
  }
  const confidential = authMethod !== 'none';
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

  let allowedScopes: string[];
  try {
    allowedScopes = registration.scopes === undefined ? scopes.grantableNames() : scopes.parse(registration.scopes.join(' '));
  } catch (error) {
    // RFC 7591 section 3.2.2 reports a bad scope as invalid client metadata.
    if (error instanceof OAuthError) throw new OAuthError('invalid_client_metadata', error.description);
    throw error;
  }

  const requirePkce = registration.requirePkce ?? true;
  if (!requirePkce && !confidential) {
    throw new OAuthError('invalid_client_metadata', 'Only a confidential client may be exempted from PKCE');
  }

  return {
    name,
    grantTypes,
    redirectUris,
    scopes: allowedScopes,
    tokenEndpointAuthMethod: authMethod,
    registrationType: registration.registrationType,
    ownerId: registration.ownerId ?? null,
    metadata: registration.metadata ?? {},
    requirePkce,
    withRegistrationAccessToken: registration.withRegistrationAccessToken ?? false,
    clientId: registration.clientId,
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
  const clientSecret = valid.tokenEndpointAuthMethod === 'none' ? undefined : `sgs_${randomToken(32)}`;
  const registrationAccessToken = valid.withRegistrationAccessToken ? `sgm_${randomToken(32)}` : undefined;

  const client = await db
    .insertInto('clients')
    .values({
      id: valid.clientId ?? randomToken(18),
      name: valid.name,
      secret_hash: clientSecret === undefined ? null : sha256Hex(clientSecret),
      token_endpoint_auth_method: valid.tokenEndpointAuthMethod,
      redirect_uris: JSON.stringify(valid.redirectUris),
      grant_types: JSON.stringify(valid.grantTypes),
      scopes: JSON.stringify(valid.scopes),
      registration_type: valid.registrationType,
      owner_id: valid.ownerId,
      created_at: now,
      metadata: JSON.stringify(valid.metadata),
      registration_access_token_hash: registrationAccessToken === undefined ? null : sha256Hex(registrationAccessToken),
      require_pkce: valid.requirePkce,
    })
    .$if(registration.replaceExisting === true, (query) =>
      query.onConflict((conflict) =>
        conflict.column('id').doUpdateSet((eb) => ({
          name: eb.ref('excluded.name'),
          redirect_uris: eb.ref('excluded.redirect_uris'),
          grant_types: eb.ref('excluded.grant_types'),
          scopes: eb.ref('excluded.scopes'),
          metadata: eb.ref('excluded.metadata'),
        })),
      ),
    )
    .returningAll()
    .executeTakeFirstOrThrow();

  return { client, clientSecret, registrationAccessToken };
}

/**
 * Replaces a client's registered metadata (RFC 7592 section 2.2). The client
 * keeps its id, secret and type: a public client cannot become confidential
 * here, because it would need a secret it was never given.
 */
export async function updateClient(
  db: Kysely<Database>,
  scopes: ScopeRegistry,
  client: Client,
  registration: ClientRegistration,
): Promise<Client> {
  const valid = validateRegistration(registration, scopes);
  if ((valid.tokenEndpointAuthMethod === 'none') !== (client.secret_hash === null)) {
    throw new OAuthError('invalid_client_metadata', 'token_endpoint_auth_method cannot change between none and a secret method');
  }

  return db.transaction().execute(async (trx) => {
    await announceChange(trx, `client:${client.id}`);
    return trx
      .updateTable('clients')
      .set({
        name: valid.name,
        token_endpoint_auth_method: valid.tokenEndpointAuthMethod,
        redirect_uris: JSON.stringify(valid.redirectUris),
        grant_types: JSON.stringify(valid.grantTypes),
        scopes: JSON.stringify(valid.scopes),
        metadata: JSON.stringify(valid.metadata),
      })
      .where('id', '=', client.id)
      .returningAll()
      .executeTakeFirstOrThrow();
  });
}

/** Deletes a client; its grants, codes and tokens go with it by cascade, on every node at once. */
export async function deleteClient(db: Kysely<Database>, clientId: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await announceChange(trx, `client:${clientId}`);
    await trx.deleteFrom('clients').where('id', '=', clientId).execute();
  });
}

/** Replaces a confidential client's secret; the old one stops working at once on every node. */
export async function replaceClientSecret(db: Kysely<Database>, clientId: string, secretHash: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await announceChange(trx, `client:${clientId}`);
    await trx.updateTable('clients').set({ secret_hash: secretHash }).where('id', '=', clientId).execute();
  });
}

/**
 * Finds a client by id: a registered one from the database, or, for an id
 * that is a URL, the client its metadata document describes (fetched or
 * cached). Throws invalid_client when such a document cannot be used.
 */
export async function lookupClient(context: OAuthContext, clientId: string): Promise<Client | undefined> {
  if (context.metadataDocuments.isDocumentUrl(clientId)) return context.metadataDocuments.resolve(clientId);

  const { cache } = context;
  const cached = cache.enabled ? cache.clients.get(clientId) : undefined;
  if (cached !== undefined) return cached;

  const stamp = cache.stamp();
  const client = await findClient(context.db, clientId);
  if (client !== undefined) cache.store(cache.clients, clientId, client, stamp);
  return client;
}

export async function findClient(db: Kysely<Database>, clientId: string): Promise<Client | undefined> {
  return db.selectFrom('clients').selectAll().where('id', '=', clientId).executeTakeFirst();
}
