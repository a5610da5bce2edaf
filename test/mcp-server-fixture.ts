import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OAuthClientProvider, OAuthDiscoveryState } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import type { Test } from 'tap';
import { readRedirect, submitConsent } from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { createTestDatabase } from './helpers/database.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// Shared by the test/mcp-server-*.test.ts files, which run the example in examples/mcp-server/.

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const MCP_SERVER = 'examples/mcp-server/speedgate-mcp';

/** Time limit of each child process, so a hang fails the test instead of blocking it. */
const PROCESS_TIMEOUT_MS = 120_000;

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Returns the parent's environment without the variables the example reads, plus `extra`. */
export function childEnv(extra: Record<string, string>): Record<string, string> {
  const inherited = Object.entries(process.env).filter(
    (entry): entry is [string, string] =>
      entry[1] !== undefined && !entry[0].startsWith('SPEEDGATE_') && !entry[0].startsWith('MCP_'),
  );
  return { ...Object.fromEntries(inherited), ...extra };
}

/** Runs a command of this repository to completion and collects its output. */
export async function runProcess(
  command: string,
  args: string[],
  env: Record<string, string>,
): Promise<ProcessResult> {
  const child = spawn(path.join(ROOT, command), args, { cwd: ROOT, env, timeout: PROCESS_TIMEOUT_MS });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end();
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface SpeedgateForMcp {
  server: TestServer;
  /** The MCP server's confidential client, as create-oauth2-app printed it. */
  clientId: string;
  clientSecret: string;
}

/**
 * Registers the MCP server's client with bin/create-oauth2-app, as an
 * operator would, then starts Speedgate with `RESOURCES` naming `mcpUrl`.
 * PGlite serves one process at a time, so the command runs before the server starts.
 */
export async function startSpeedgateForMcp(t: Test, mcpUrl: string): Promise<SpeedgateForMcp> {
  const database = await createTestDatabase({ onDisk: true });
  t.teardown(() => database.drop());

  const args = ['MCP server', '--confidential', '--grant-type', 'token_exchange', '--resource', mcpUrl, '--json'];
  const created = await runProcess('bin/create-oauth2-app', args, childEnv(database.env));
  if (created.code !== 0) throw new Error(`create-oauth2-app exited with ${created.code}: ${created.stderr}`);
  const { client_id: clientId, client_secret: clientSecret } = JSON.parse(created.stdout);

  const server = await startServer(t, { database, env: { RESOURCES: mcpUrl } });
  return { server, clientId, clientSecret };
}

/** Resolves once the child's standard error matches `pattern`; rejects if the child exits first. */
function waitForStderr(child: ChildProcess, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: string) => {
      output += chunk;
      if (!pattern.test(output)) return;
      child.off('exit', onExit);
      resolve();
    };
    const onExit = (code: number | null) => {
      child.stderr?.off('data', onData);
      reject(new Error(`the MCP server exited with ${code} before logging ${pattern}:\n${output}`));
    };
    child.stderr?.setEncoding('utf8').on('data', onData);
    child.once('exit', onExit);
  });
}

/** A running example MCP server in HTTP mode, stopped when the test ends. */
export interface McpHttpServer {
  url: string;
  /** Everything the server logged so far. */
  stderr(): string;
}

/** Starts the example in HTTP mode on `port` as the protected resource `mcpUrl`. */
export async function startMcpHttpServer(
  t: Test,
  speedgate: SpeedgateForMcp,
  port: number,
  mcpUrl: string,
): Promise<McpHttpServer> {
  const env = childEnv({
    SPEEDGATE_URL: speedgate.server.url,
    MCP_PUBLIC_URL: mcpUrl,
    MCP_CLIENT_ID: speedgate.clientId,
    MCP_CLIENT_SECRET: speedgate.clientSecret,
  });
  const child = spawn(path.join(ROOT, MCP_SERVER), ['http', '--port', String(port)], { cwd: ROOT, env });
  let log = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.teardown(async () => {
    child.kill();
    await exited;
  });

  await waitForStderr(child, /"message":"MCP server listening"/);
  return { url: mcpUrl, stderr: () => log };
}

/**
 * An OAuth client provider kept in memory, as the MCP SDK's client uses it:
 * it registers by DCR and records the authorization URL instead of opening a browser.
 */
export class MemoryOAuthProvider implements OAuthClientProvider {
  static readonly REDIRECT_URL = 'http://127.0.0.1:33418/callback';

  authorizationUrl: URL | undefined;
  client: OAuthClientInformationMixed | undefined;
  savedTokens: OAuthTokens | undefined;
  #codeVerifier = '';
  #discovery: OAuthDiscoveryState | undefined;

  get redirectUrl(): string {
    return MemoryOAuthProvider.REDIRECT_URL;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: 'Speedgate MCP test client',
      redirect_uris: [MemoryOAuthProvider.REDIRECT_URL],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.client;
  }

  saveClientInformation(client: OAuthClientInformationMixed): void {
    this.client = client;
  }

  tokens(): OAuthTokens | undefined {
    return this.savedTokens;
  }

  saveTokens(tokens: OAuthTokens): void {
    this.savedTokens = tokens;
  }

  redirectToAuthorization(authorizationUrl: URL): void {
    this.authorizationUrl = authorizationUrl;
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.#codeVerifier = codeVerifier;
  }

  codeVerifier(): string {
    return this.#codeVerifier;
  }

  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.#discovery = state;
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.#discovery;
  }
}

export interface ConsentOptions {
  /** Scopes to untick on the consent page. */
  untick?: string[];
}

/**
 * Opens the authorization URL in a signed-in browser session, approves the
 * consent page when one is shown, and returns the redirect's parameters.
 */
export async function approveAuthorization(
  browser: BrowserSession,
  authorizationUrl: URL,
  options: ConsentOptions = {},
): Promise<Record<string, string>> {
  let response = await browser.get(authorizationUrl.pathname + authorizationUrl.search);
  if (response.status === 200) {
    response = await submitConsent(browser, await response.text(), { untick: options.untick });
  }
  return readRedirect(response).parameters;
}
