import {
  chmodSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { CliError } from './errors.ts';
import type { TokenSet } from './tokens.ts';

/** Tokens stored by `login`, with the server and client that they were issued for. */
export interface Credentials {
  server: string;
  client_id: string;
  access_token: string;
  refresh_token?: string;
  /** When the access token expires, as an ISO 8601 time from this machine's clock. */
  expires_at?: string;
  scope?: string;
}

/** Time before the stored expiry at which the CLI refreshes, so no token expires in transit. */
const EXPIRY_MARGIN_MS = 30_000;

/**
 * Returns the CLI's configuration folder: `$XDG_CONFIG_HOME/speedgate-cli`,
 * or `~/.config/speedgate-cli` when the variable is unset or relative, as the
 * XDG Base Directory Specification requires.
 */
export function configFolder(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME;
  const usable = base !== undefined && path.isAbsolute(base);
  return path.join(usable ? base : path.join(homedir(), '.config'), 'speedgate-cli');
}

export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(configFolder(env), 'credentials.json');
}

/**
 * Builds the credentials to store from a token response. When the response has
 * no refresh token, the one in `base` is kept: RFC 6749 section 6 lets a
 * refresh response leave it out, and the old one then stays valid.
 */
export function credentialsFromTokens(
  base: Pick<Credentials, 'server' | 'client_id' | 'refresh_token'>,
  tokens: TokenSet,
  now = new Date(),
): Credentials {
  const expiresAt =
    tokens.expiresIn === undefined ? undefined : new Date(now.getTime() + tokens.expiresIn * 1000);
  return {
    server: base.server,
    client_id: base.client_id,
    access_token: tokens.accessToken,
    refresh_token: tokens.refreshToken ?? base.refresh_token,
    expires_at: expiresAt?.toISOString(),
    scope: tokens.scope,
  };
}

/**
 * Reports whether the access token has expired, or will within the margin.
 * A token without a stored expiry counts as valid until the API rejects it.
 */
export function isExpired(credentials: Credentials, now = new Date()): boolean {
  if (credentials.expires_at === undefined) return false;
  return Date.parse(credentials.expires_at) - EXPIRY_MARGIN_MS <= now.getTime();
}

/**
 * Writes the credentials file readable by its owner only (mode 0600, folder
 * 0700). The file is written under a temporary name and renamed, so a crash
 * never leaves half a file.
 */
export function saveCredentials(
  credentials: Credentials,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const folder = configFolder(env);
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  // mkdir leaves the mode of a folder that already exists as it was.
  chmodSync(folder, 0o700);

  const file = credentialsPath(env);
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
    // The mode option applies only when the file is created, not to a leftover temporary file.
    chmodSync(temporary, 0o600);
    renameSync(temporary, file);
  } finally {
    rmSync(temporary, { force: true });
  }
  return file;
}

function readCredentialsFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`Could not read ${file}: ${(error as Error).message}`);
  }
}

function warnIfShared(file: string): void {
  if (process.platform === 'win32') return;
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) === 0) return;

  const octal = mode.toString(8);
  console.error(`warning: ${file} has mode ${octal}, so other users can read or change it.`);
  console.error(`Run chmod 600 ${file} to fix it.`);
}

function hasCredentialFields(parsed: unknown): parsed is Credentials {
  if (typeof parsed !== 'object' || parsed === null) return false;

  const value = parsed as Partial<Credentials>;
  const required = [value.server, value.client_id, value.access_token];
  const optional = [value.refresh_token, value.expires_at, value.scope];
  return (
    required.every((field) => typeof field === 'string') &&
    optional.every((field) => field === undefined || typeof field === 'string')
  );
}

/** Reads the stored credentials, or returns undefined when `login` has not run. */
export function loadCredentials(env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const file = credentialsPath(env);
  const text = readCredentialsFile(file);
  if (text === undefined) return undefined;

  warnIfShared(file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`${file} is not valid JSON. Run speedgate-cli login to replace it.`);
  }

  if (!hasCredentialFields(parsed)) {
    const message = `${file} does not contain valid credentials.`;
    throw new CliError(`${message} Run speedgate-cli login to replace it.`);
  }
  return parsed;
}

/**
 * Deletes the credentials file, if there is one, and returns its path. The
 * folder stays, because other files may live in it.
 */
export function deleteCredentials(env: NodeJS.ProcessEnv = process.env): string {
  const file = credentialsPath(env);
  try {
    rmSync(file, { force: true });
  } catch (error) {
    throw new CliError(`Could not delete ${file}: ${(error as Error).message}`);
  }
  return file;
}
