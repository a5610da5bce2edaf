import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/** A scope an operator may add to the registry through `SCOPES_FILE`. */
/** How much a scope lets an application do, shown as a label next to it. */
export type ScopeRisk = 'read' | 'write' | 'admin';

export interface ScopeDefinition {
  name: string;
  description: string;
  /** Defaults to `write` for names starting with `write:`, else `read`. */
  risk?: ScopeRisk;
}

/** Settings of one Speedgate server, parsed once from the environment. */
export interface Config {
  port: number;
  host: string;
  /** The issuer identifier (RFC 8414): an absolute URL without a trailing slash. */
  issuer: string;
  /** A PostgreSQL URL, or undefined for the embedded PGlite database. */
  databaseUrl: string | undefined;
  /** Folder of the embedded database, or `memory://` for a throwaway one. */
  dataDir: string;
  /**
   * Proxies whose X-Forwarded-For is believed, as Fastify's `trustProxy`:
   * false, true, a hop count, or a list of addresses and CIDR ranges.
   */
  trustProxy: boolean | number | string[];
  /** Connections in the PostgreSQL pool of each node. */
  databasePoolSize: number;
  /** A Redis URL for rate-limit counters; unset keeps them in the database. */
  redisUrl: string | undefined;
  dcrEnabled: boolean;
  /** A bearer token that RFC 7591 registration requests must carry, when set. */
  dcrInitialAccessToken: string | undefined;
  /** Accounts that may be created per address per hour. */
  signupRateLimitPerHour: number;
  /** Delay added to each login attempt on an account with repeated recent failures, in milliseconds. */
  loginFailureDelayMs: number;
  /** Failed client authentications and grants allowed per address per minute at the OAuth endpoints. */
  oauthFailureLimit: number;
  /** Registrations accepted per address per hour. */
  dcrRateLimitPerHour: number;
  /** Days after which a dynamically registered client that was never used is deleted. */
  dcrUnusedClientDays: number;
  /** Whether Client ID Metadata Documents may be fetched from loopback addresses, for local development. */
  cimdAllowLoopback: boolean;
  production: boolean;
  logLevel: string;
  extraScopes: ScopeDefinition[];
  /** Resource servers besides the demo API that may be named in RFC 8707 `resource`, such as an MCP server. */
  extraResources: string[];
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** How long a client may retry a refresh and get the same result, in seconds. */
  refreshGraceSeconds: number;
  sessionTtlSeconds: number;
  deviceCodeTtlSeconds: number;
  /** The minimum poll interval first given to a device client (RFC 8628 section 3.2). */
  deviceCodeIntervalSeconds: number;
  /** The clock every expiry check reads, so tests can move time instead of sleeping. */
  now: () => Date;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function readInteger(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;

  if (!/^\d+$/.test(raw)) {
    throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  }

  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function readBoolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;

  const lower = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(lower)) return true;
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function readIssuer(env: Env, port: number): string {
  const raw = env.ISSUER;
  if (raw === undefined || raw === '') return `http://localhost:${port}`;

  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`ISSUER must be an absolute URL such as https://auth.example.com, got "${raw}"`);
  }

  // RFC 8414 section 2: the issuer has no query or fragment.
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`ISSUER must use https (or http for local development), got "${raw}"`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw new ConfigError(`ISSUER must not have a query or fragment, got "${raw}"`);
  }
  return url.href.replace(/\/+$/, '');
}

function readDatabaseUrl(env: Env): string | undefined {
  const raw = env.DATABASE_URL;
  if (raw === undefined || raw === '') return undefined;

  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('DATABASE_URL must be a URL such as postgres://user@127.0.0.1:5432/speedgate');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(`DATABASE_URL must start with postgres:// or postgresql://, got "${url.protocol}//"`);
  }
  return raw;
}

const SCOPE_NAME = /^[a-z][a-z0-9_.:-]{0,63}$/;

function readScopesFile(env: Env): ScopeDefinition[] {
  const path = env.SCOPES_FILE;
  if (path === undefined || path === '') return [];

  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(resolve(path), 'utf8'));
  } catch (error) {
    throw new ConfigError(`SCOPES_FILE could not be read as JSON: ${(error as Error).message}`);
  }

  if (!Array.isArray(parsed)) {
    throw new ConfigError('SCOPES_FILE must contain a JSON array of {"name", "description", "risk"} objects');
  }

  return parsed.map((entry, index) => {
    const name = entry?.name;
    const description = entry?.description;
    if (typeof name !== 'string' || !SCOPE_NAME.test(name)) {
      throw new ConfigError(`SCOPES_FILE entry ${index}: name must match ${SCOPE_NAME}, got ${JSON.stringify(name)}`);
    }
    if (typeof description !== 'string' || description.trim() === '' || description.length > 200) {
      throw new ConfigError(`SCOPES_FILE entry ${index} (${name}): description must be 1 to 200 characters`);
    }
    const risk = entry?.risk;
    if (risk !== undefined && risk !== 'read' && risk !== 'write' && risk !== 'admin') {
      throw new ConfigError(`SCOPES_FILE entry ${index} (${name}): risk must be read, write or admin`);
    }
    return { name, description, risk };
  });
}

function readTrustProxy(env: Env): boolean | number | string[] {
  const raw = (env.TRUST_PROXY ?? '').trim();
  if (raw === '' || raw === 'false') return false;
  if (raw === 'true') return true;
  if (/^\d+$/.test(raw)) return Number(raw);

  const entries = raw.split(',').map((entry) => entry.trim());
  if (entries.some((entry) => !/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(entry))) {
    throw new ConfigError(`TRUST_PROXY must be true, false, a hop count or a comma-separated list of addresses, got "${raw}"`);
  }
  return entries;
}

function readRedisUrl(env: Env): string | undefined {
  const raw = env.REDIS_URL;
  if (raw === undefined || raw === '') return undefined;
  if (!/^rediss?:\/\//.test(raw)) throw new ConfigError('REDIS_URL must start with redis:// or rediss://');
  return raw;
}

function readResources(env: Env): string[] {
  const raw = env.RESOURCES;
  if (raw === undefined || raw.trim() === '') return [];

  return raw.split(',').map((entry) => {
    const value = entry.trim();
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new ConfigError(`RESOURCES must be a comma-separated list of absolute URLs, got "${value}"`);
    }
    if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.hash !== '') {
      throw new ConfigError(`RESOURCES entries must be http(s) URLs without a fragment, got "${value}"`);
    }
    return value;
  });
}

/**
 * Parses and validates the server settings from environment variables.
 * Throws ConfigError naming the variable and the expected form.
 */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const production = env.NODE_ENV === 'production';
  const port = readInteger(env, 'PORT', 3000, 0, 65535);

  const config: Config = {
    port,
    host: env.HOST || '127.0.0.1',
    issuer: readIssuer(env, port),
    databaseUrl: readDatabaseUrl(env),
    dataDir: env.DATA_DIR || './data',
    redisUrl: readRedisUrl(env),
    databasePoolSize: readInteger(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    trustProxy: readTrustProxy(env),
    // Open registration is convenient while developing; production opts in.
    dcrEnabled: readBoolean(env, 'DCR_ENABLED', !production),
    dcrInitialAccessToken: env.DCR_INITIAL_ACCESS_TOKEN || undefined,
    dcrRateLimitPerHour: readInteger(env, 'DCR_RATE_LIMIT', 20, 1, 100_000),
    oauthFailureLimit: readInteger(env, 'OAUTH_FAILURE_LIMIT', 30, 1, 100_000),
    loginFailureDelayMs: readInteger(env, 'LOGIN_FAILURE_DELAY_MS', 1000, 0, 10_000),
    signupRateLimitPerHour: readInteger(env, 'SIGNUP_RATE_LIMIT', 10, 1, 100_000),
    dcrUnusedClientDays: readInteger(env, 'DCR_UNUSED_CLIENT_DAYS', 30, 1, 3650),
    cimdAllowLoopback: readBoolean(env, 'CIMD_ALLOW_LOOPBACK', false),
    production,
    logLevel: env.LOG_LEVEL || 'info',
    extraScopes: readScopesFile(env),
    extraResources: readResources(env),
    accessTokenTtlSeconds: readInteger(env, 'ACCESS_TOKEN_TTL', 3600, 60, 86400),
    refreshTokenTtlSeconds: readInteger(env, 'REFRESH_TOKEN_TTL', 30 * 86400, 3600, 365 * 86400),
    refreshGraceSeconds: readInteger(env, 'REFRESH_GRACE_PERIOD', 60, 0, 600),
    sessionTtlSeconds: readInteger(env, 'SESSION_TTL', 14 * 86400, 300, 365 * 86400),
    deviceCodeTtlSeconds: readInteger(env, 'DEVICE_CODE_TTL', 900, 60, 3600),
    deviceCodeIntervalSeconds: readInteger(env, 'DEVICE_CODE_INTERVAL', 5, 1, 60),
    now: () => new Date(),
    ...overrides,
  };

  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(config.logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "${config.logLevel}"`);
  }
  return Object.freeze(config);
}
