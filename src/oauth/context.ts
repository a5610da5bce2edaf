import type { Kysely } from 'kysely';
import type { Config } from '../config.ts';
import type { AuditLog } from '../db/audit-log.ts';
import type { AuthCache } from '../db/auth-cache.ts';
import type { Database } from '../db/schema.ts';
import type { SigningKeys } from './keys.ts';
import type { MetadataDocumentClients } from './metadata-documents.ts';
import type { ScopeRegistry } from './scopes.ts';

/** Dependencies of the protocol core: storage, keys, scopes, caches and settings. */
export interface OAuthContext {
  db: Kysely<Database>;
  config: Config;
  keys: SigningKeys;
  scopes: ScopeRegistry;
  metadataDocuments: MetadataDocumentClients;
  audit: AuditLog;
  cache: AuthCache;
}

/** Returns the resource identifier of the demo API, the default audience of access tokens. */
export function apiResource(config: Config): string {
  return `${config.issuer}/api/v1`;
}
