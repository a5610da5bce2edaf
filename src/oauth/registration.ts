import type { Client, ClientMetadata } from '../db/schema.ts';
import {
  GRANT_TYPES,
  SUPPORTED_GRANT_TYPES,
  TOKEN_ENDPOINT_AUTH_METHODS,
  checkRedirectUri,
  type ClientRegistration,
  type TokenEndpointAuthMethod,
} from './clients.ts';
import { OAuthError } from './errors.ts';

const MAX_STRING_LENGTH = 2000;
const MAX_CONTACTS = 10;
const URL_FIELDS = ['client_uri', 'logo_uri', 'tos_uri', 'policy_uri'] as const;

function invalidMetadata(description: string): OAuthError {
  return new OAuthError('invalid_client_metadata', description);
}

function readString(body: Record<string, unknown>, field: string, maxLength = MAX_STRING_LENGTH): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidMetadata(`${field} must be a string`);
  if (value.length > maxLength) throw invalidMetadata(`${field} must be at most ${maxLength} characters`);
  return value;
}

function readStringArray(body: Record<string, unknown>, field: string, maxItems: number): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw invalidMetadata(`${field} must be an array of strings`);
  }
  if (value.some((item: string) => item.length > MAX_STRING_LENGTH)) {
    throw invalidMetadata(`Each entry of ${field} must be at most ${MAX_STRING_LENGTH} characters`);
  }
  if (value.length > maxItems) throw invalidMetadata(`${field} must have at most ${maxItems} entries`);
  return value as string[];
}

function readWebUrl(body: Record<string, unknown>, field: string): string | undefined {
  const value = readString(body, field);
  if (value === undefined) return undefined;

  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalidMetadata(`${field} must be an absolute https URL`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))) {
    throw invalidMetadata(`${field} must be an https URL`);
  }
  return value;
}

function readRedirectUris(body: Record<string, unknown>): string[] | undefined {
  const uris = readStringArray(body, 'redirect_uris', 20);
  for (const uri of uris ?? []) {
    if (uri.includes('*')) throw new OAuthError('invalid_redirect_uri', `redirect_uri ${uri}: wildcards are not allowed`);
    const problem = checkRedirectUri(uri);
    if (problem !== null) throw new OAuthError('invalid_redirect_uri', `redirect_uri ${uri}: ${problem}`);
  }
  return uris;
}

function readOptionalMetadata(body: Record<string, unknown>): ClientMetadata {
  const metadata: ClientMetadata = {};
  for (const field of URL_FIELDS) {
    const value = readWebUrl(body, field);
    if (value !== undefined) metadata[field] = value;
  }

  const contacts = readStringArray(body, 'contacts', MAX_CONTACTS);
  if (contacts !== undefined) metadata.contacts = contacts;
  const softwareId = readString(body, 'software_id', 200);
  if (softwareId !== undefined) metadata.software_id = softwareId;
  const softwareVersion = readString(body, 'software_version', 200);
  if (softwareVersion !== undefined) metadata.software_version = softwareVersion;

  const applicationType = readString(body, 'application_type', 20);
  if (applicationType !== undefined && applicationType !== 'web' && applicationType !== 'native') {
    throw invalidMetadata('application_type must be web or native');
  }
  if (applicationType !== undefined) metadata.application_type = applicationType;
  return metadata;
}

function readGrantAndResponseTypes(body: Record<string, unknown>): string[] {
  // RFC 7591 section 2: grant_types defaults to authorization_code.
  const grantTypes = readStringArray(body, 'grant_types', 10) ?? [GRANT_TYPES.authorizationCode];
  const unsupportedGrants = grantTypes.filter((grant) => !SUPPORTED_GRANT_TYPES.includes(grant));
  if (unsupportedGrants.length > 0) throw invalidMetadata(`Unsupported grant_types: ${unsupportedGrants.join(', ')}`);

  // RFC 7591 defaults response_types to code. An omitted one follows grant_types
  // instead, so a client_credentials-only client need not send an empty list.
  const usesCode = grantTypes.includes(GRANT_TYPES.authorizationCode);
  const responseTypes = readStringArray(body, 'response_types', 5) ?? (usesCode ? ['code'] : []);

  const unsupported = responseTypes.filter((type) => type !== 'code');
  if (unsupported.length > 0) throw invalidMetadata(`Unsupported response_types: ${unsupported.join(', ')}; only code is supported`);
  if (usesCode !== responseTypes.includes('code')) {
    throw invalidMetadata('grant_types authorization_code and response_types code must be registered together');
  }
  return grantTypes;
}

/**
 * Validates an RFC 7591 registration request body. Unknown fields are
 * ignored, as section 2 requires; a known field with a bad value throws
 * invalid_client_metadata or invalid_redirect_uri naming it.
 */
export function readRegistrationRequest(body: unknown): Omit<ClientRegistration, 'registrationType'> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidMetadata('The registration request must be a JSON object');
  }
  const fields = body as Record<string, unknown>;

  const authMethod = readString(fields, 'token_endpoint_auth_method', 50) ?? 'client_secret_basic';
  if (!(TOKEN_ENDPOINT_AUTH_METHODS as readonly string[]).includes(authMethod)) {
    throw invalidMetadata(`Unsupported token_endpoint_auth_method: ${authMethod}; use none, client_secret_basic or client_secret_post`);
  }

  const scope = readString(fields, 'scope', 1000);
  return {
    name: readString(fields, 'client_name', 100) ?? 'Unnamed application',
    grantTypes: readGrantAndResponseTypes(fields),
    redirectUris: readRedirectUris(fields),
    scopes: scope === undefined ? undefined : scope.split(/[ ,]+/).filter((name) => name !== ''),
    tokenEndpointAuthMethod: authMethod as TokenEndpointAuthMethod,
    metadata: readOptionalMetadata(fields),
  };
}

/** Builds the client information response (RFC 7591 section 3.2.1): stored metadata, never a null. */
export function describeClient(client: Client, issuer: string, secrets: { clientSecret?: string; registrationAccessToken?: string }) {
  const response: Record<string, unknown> = {
    client_id: client.id,
    client_id_issued_at: Math.floor(client.created_at.getTime() / 1000),
    client_name: client.name,
    redirect_uris: client.redirect_uris,
    grant_types: client.grant_types,
    response_types: client.grant_types.includes(GRANT_TYPES.authorizationCode) ? ['code'] : [],
    token_endpoint_auth_method: client.token_endpoint_auth_method,
    scope: client.scopes.join(' '),
    application_type: client.metadata.application_type ?? 'web',
    ...client.metadata,
  };

  if (secrets.clientSecret !== undefined) {
    response.client_secret = secrets.clientSecret;
    // Zero: the secret does not expire (RFC 7591 section 3.2.1).
    response.client_secret_expires_at = 0;
  }
  if (client.registration_access_token_hash !== null) {
    if (secrets.registrationAccessToken !== undefined) response.registration_access_token = secrets.registrationAccessToken;
    response.registration_client_uri = `${issuer}/o/register/${encodeURIComponent(client.id)}`;
  }
  return response;
}
