import type { ColumnType, Insertable, Selectable } from 'kysely';

type Timestamp = ColumnType<Date, Date, Date>;
type Json<T> = ColumnType<T, string, string>;

export interface SettingsTable {
  name: string;
  value: string;
}

export interface UsersTable {
  id: string;
  email: string;
  name: string;
  password_hash: string;
  is_admin: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
}

export interface SessionsTable {
  id_hash: string;
  user_id: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  ip_address: string | null;
  user_agent: string | null;
}

/**
 * Origin of a client: an operator command or page, RFC 7591 dynamic
 * registration, or a Client ID Metadata Document fetched from its URL.
 */
export type RegistrationType = 'operator' | 'dynamic' | 'metadata_document';

/** Optional RFC 7591 section 2 metadata, stored as given and echoed back. */
export interface ClientMetadata {
  client_uri?: string;
  logo_uri?: string;
  tos_uri?: string;
  policy_uri?: string;
  contacts?: string[];
  software_id?: string;
  software_version?: string;
  application_type?: 'web' | 'native';
  /**
   * The protected resource this client operates, such as an MCP server. Set
   * only by an operator: it lets the client exchange tokens issued for that
   * resource (RFC 8693).
   */
  resource?: string;
}

export interface ClientsTable {
  id: string;
  name: string;
  secret_hash: string | null;
  token_endpoint_auth_method: string;
  redirect_uris: Json<string[]>;
  grant_types: Json<string[]>;
  scopes: Json<string[]>;
  registration_type: RegistrationType;
  owner_id: string | null;
  created_at: Timestamp;
  metadata: ColumnType<ClientMetadata, string | undefined, string>;
  registration_access_token_hash: string | null;
  require_pkce: ColumnType<boolean, boolean | undefined, boolean>;
  last_used_at: Timestamp | null;
}

export interface SigningKeysTable {
  kid: string;
  alg: string;
  private_jwk: Json<Record<string, unknown>>;
  public_jwk: Json<Record<string, unknown>>;
  created_at: Timestamp;
  retired_at: Timestamp | null;
}

export interface GrantsTable {
  id: string;
  user_id: string | null;
  client_id: string;
  scope: string;
  resource: string;
  /** The grant type that created the authorization, such as `device_code`. */
  origin: string;
  created_at: Timestamp;
  last_used_at: Timestamp | null;
  revoked_at: Timestamp | null;
}

export interface RefreshTokensTable {
  id: string;
  token_hash: string;
  grant_id: string;
  scope: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  rotated_at: Timestamp | null;
  revoked_at: Timestamp | null;
  successor_response: string | null;
}

export type DeviceCodeStatus = 'pending' | 'approved' | 'denied' | 'consumed';

export interface DeviceCodesTable {
  id: string;
  device_code_hash: string;
  user_code_hash: string;
  client_id: string;
  scope: string;
  resource: string;
  status: DeviceCodeStatus;
  user_id: string | null;
  interval_seconds: number;
  last_polled_at: Timestamp | null;
  requester_ip: string | null;
  requester_user_agent: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface AuthorizationCodesTable {
  id: string;
  code_hash: string;
  client_id: string;
  user_id: string;
  redirect_uri: string;
  redirect_uri_sent: boolean;
  scope: string;
  resource: string;
  /** Null only for a confidential client that an operator exempted from PKCE. */
  code_challenge: string | null;
  grant_id: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  consumed_at: Timestamp | null;
}

export interface ConsentsTable {
  user_id: string;
  client_id: string;
  scope: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface PersonalAccessTokensTable {
  id: string;
  user_id: string;
  name: string;
  token_hash: string;
  display_prefix: string;
  scope: string;
  created_at: Timestamp;
  expires_at: Timestamp | null;
  revoked_at: Timestamp | null;
  /** `user` when the owner revoked it, `leak_report` when someone reported it leaked. */
  revoked_reason: string | null;
  /** Where the leak report found the token, such as a URL. */
  leak_source: string | null;
  last_used_at: Timestamp | null;
  last_used_ip: string | null;
  last_used_user_agent: string | null;
  /** The id of the page form that created the token; a resubmission of it is refused. */
  form_id: string | null;
}

export interface AuditEventsTable {
  id: string;
  event: string;
  user_id: string | null;
  client_id: string | null;
  ip_address: string | null;
  user_agent: string | null;
  /** A short human-readable detail, never a secret. */
  detail: string | null;
  created_at: Timestamp;
}

export interface RateLimitsTable {
  key: string;
  count: number;
  window_ends_at: Timestamp;
}

export interface TeamsTable {
  id: string;
  name: string;
  created_at: Timestamp;
}

export interface TeamMembersTable {
  team_id: string;
  user_id: string;
  role: 'owner' | 'member';
  joined_at: Timestamp;
}

export interface TeamInvitationsTable {
  id: string;
  team_id: string;
  email: string;
  role: 'owner' | 'member';
  invited_by: string;
  created_at: Timestamp;
}

export interface ProductsTable {
  id: string;
  name: string;
  description: string;
  price_cents: number;
}

export interface Database {
  settings: SettingsTable;
  users: UsersTable;
  sessions: SessionsTable;
  clients: ClientsTable;
  signing_keys: SigningKeysTable;
  grants: GrantsTable;
  refresh_tokens: RefreshTokensTable;
  device_codes: DeviceCodesTable;
  authorization_codes: AuthorizationCodesTable;
  consents: ConsentsTable;
  personal_access_tokens: PersonalAccessTokensTable;
  audit_events: AuditEventsTable;
  rate_limits: RateLimitsTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  team_invitations: TeamInvitationsTable;
  products: ProductsTable;
}

export type User = Selectable<UsersTable>;
export type Client = Selectable<ClientsTable>;
export type NewClient = Insertable<ClientsTable>;
export type Grant = Selectable<GrantsTable>;
export type DeviceCode = Selectable<DeviceCodesTable>;
export type PersonalAccessToken = Selectable<PersonalAccessTokensTable>;
