type Env = Record<string, string | undefined>;

/** A missing or invalid setting; the message names the variable or option and the expected form. */
export class SettingsError extends Error {
  override name = 'SettingsError';
}

/** Settings of stdio mode, where a personal access token authenticates every API call. */
export interface StdioSettings {
  /** Speedgate's issuer URL, without a trailing slash. */
  speedgateUrl: string;
  token: string;
}

/** Settings of HTTP mode, where the server is an OAuth protected resource of Speedgate. */
export interface HttpSettings {
  speedgateUrl: string;
  /** The resource identifier: MCP_PUBLIC_URL without a trailing slash, the audience of accepted tokens. */
  resource: string;
  /** The path of the MCP endpoint, taken from MCP_PUBLIC_URL. */
  mcpPath: string;
  clientId: string;
  clientSecret: string;
  port: number;
  host: string;
}

/** Default of SPEEDGATE_URL: the issuer of a Speedgate server started with no settings. */
const DEFAULT_SPEEDGATE_URL = 'http://localhost:3000';
const DEFAULT_PORT = 8787;
const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

function readRequired(env: Env, name: string, example: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') {
    throw new SettingsError(`${name} is missing; set it to ${example}`);
  }
  return value.trim();
}

/**
 * Parses an absolute http(s) URL without a query or fragment. Plain http is
 * accepted only on a loopback host, because bearer tokens travel to these URLs.
 */
function readUrl(name: string, raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SettingsError(`${name} must be an absolute URL such as https://auth.example.com, got "${raw}"`);
  }

  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SettingsError(`${name} must use https, got "${raw}"`);
  }
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.includes(url.hostname)) {
    throw new SettingsError(`${name} must use https unless the host is a loopback address, got "${raw}"`);
  }
  if (url.search !== '' || url.hash !== '' || raw.includes('#')) {
    throw new SettingsError(`${name} must not have a query or fragment, got "${raw}"`);
  }
  return url;
}

function withoutTrailingSlash(url: URL): string {
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function readSpeedgateUrl(env: Env): string {
  const raw = env.SPEEDGATE_URL?.trim() || DEFAULT_SPEEDGATE_URL;
  return withoutTrailingSlash(readUrl('SPEEDGATE_URL', raw));
}

/** Reads stdio mode's settings: SPEEDGATE_URL and SPEEDGATE_TOKEN. */
export function readStdioSettings(env: Env): StdioSettings {
  return {
    speedgateUrl: readSpeedgateUrl(env),
    token: readRequired(env, 'SPEEDGATE_TOKEN', 'a personal access token (spd_...)'),
  };
}

function readPort(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_PORT;
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) {
    throw new SettingsError(`--port must be a whole number from 0 to 65535, got "${raw}"`);
  }
  return Number(raw);
}

/** Reads HTTP mode's settings from the environment and the --port and --host options. */
export function readHttpSettings(env: Env, options: { port?: string; host?: string }): HttpSettings {
  const example = 'the URL clients use for this server, such as http://127.0.0.1:8787/mcp';
  const publicUrl = readUrl('MCP_PUBLIC_URL', readRequired(env, 'MCP_PUBLIC_URL', example));
  const resource = withoutTrailingSlash(publicUrl);

  return {
    speedgateUrl: readSpeedgateUrl(env),
    resource,
    mcpPath: new URL(resource).pathname,
    clientId: readRequired(env, 'MCP_CLIENT_ID', 'the client_id that create-oauth2-app printed'),
    clientSecret: readRequired(env, 'MCP_CLIENT_SECRET', 'the client_secret that create-oauth2-app printed'),
    port: readPort(options.port),
    host: options.host ?? '127.0.0.1',
  };
}
