import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { BrowserSession } from './browser-session.ts';
import { createTestDatabase } from './database.ts';
import { startServer, type TestServer } from './server.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

// The operator commands and the example CLI, run through their executable wrappers as a user would.
export const CREATE_USER = 'bin/create-user';
export const CREATE_APP = 'bin/create-oauth2-app';
export const CLI = 'examples/cli/speedgate-cli';
export const EMAIL = 'ada@example.com';
export const PASSWORD = 'correct horse battery';

/** Time limit of each child process. A hang then fails the test instead of blocking it. */
const PROCESS_TIMEOUT_MS = 60_000;

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Child processes still running, stopped by `stopRunningProcesses`. */
const runningProcesses = new Set<ChildProcess>();

/** Stops every child process still running, for a test file's teardown. */
export function stopRunningProcesses(): void {
  for (const child of runningProcesses) child.kill();
}

/** A child process whose output is collected as it arrives. */
export class RunningProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<ProcessResult>;

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv, input?: string) {
    this.child = spawn(path.join(ROOT, command), args, { cwd: ROOT, env, timeout: PROCESS_TIMEOUT_MS });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.child.stdin?.end(input ?? '');
    runningProcesses.add(this.child);
    this.exited = new Promise((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (code, signal) => {
        runningProcesses.delete(this.child);
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** Resolves with the first match of `pattern` on standard output, or rejects on exit. */
  async waitForOutput(pattern: RegExp): Promise<RegExpExecArray> {
    for (;;) {
      const match = pattern.exec(this.stdout);
      if (match !== null) return match;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        const output = `${this.stdout}\n${this.stderr}`;
        throw new Error(`process exited before printing ${pattern}:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

export async function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input?: string,
): Promise<ProcessResult> {
  return new RunningProcess(command, args, env, input).exited;
}

/** Returns the parent's environment without SPEEDGATE_ variables, plus `extra`. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('SPEEDGATE_'));
  return { ...Object.fromEntries(inherited), ...extra };
}

/** Creates a folder for XDG_CONFIG_HOME, removed when `t` ends. */
export function configHome(t: Test): string {
  const folder = mkdtempSync(path.join(tmpdir(), 'speedgate-cli-test-'));
  t.teardown(() => rmSync(folder, { recursive: true, force: true }));
  return folder;
}

export function credentialsFile(home: string): string {
  return path.join(home, 'speedgate-cli', 'credentials.json');
}

export function readCredentials(home: string): Record<string, string> {
  return JSON.parse(readFileSync(credentialsFile(home), 'utf8'));
}

/** Runs the CLI with `home` as XDG_CONFIG_HOME, plus the variables in `env`. */
export async function runCli(
  home: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<ProcessResult> {
  return run(CLI, args, cleanEnv({ XDG_CONFIG_HOME: home, ...env }));
}

/** Calls `read` until it returns a value, for up to 20 seconds. */
export async function waitFor<T>(read: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function readUserCode(login: RunningProcess): Promise<string> {
  const match = await login.waitForOutput(/enter the code ([A-Z]{4}-[A-Z]{4})\n/);
  return match[1];
}

/**
 * A listening server with the user `EMAIL` and a public application, both
 * created with the operator commands, and the steps that sign the CLI in.
 */
export interface CliServer {
  server: TestServer;
  clientId: string;
  userCreated: ProcessResult;
  appCreated: ProcessResult;
  /** Starts `login`, given the server and client id through the environment or as options. */
  startLogin(home: string, args?: string[], settings?: 'env' | 'options'): RunningProcess;
  /** Logs in as the test user in a fresh browser session and decides on `userCode`. */
  decide(t: Test, userCode: string, action: 'approve' | 'deny'): Promise<void>;
  /** Runs `login` with `args` to completion with approval, so a test starts signed in. */
  signIn(t: Test, home: string, args?: string[]): Promise<void>;
}

/**
 * Creates a database, the test user and a public application with the
 * operator commands, then starts a server with `serverEnv` on it. Child
 * processes still running when the test file ends are stopped.
 */
export async function startCliServer(
  t: Test,
  serverEnv: Record<string, string>,
): Promise<CliServer> {
  t.teardown(stopRunningProcesses);

  // PGlite serves one process at a time, so the operator commands run before the server starts.
  const database = await createTestDatabase({ onDisk: true });
  t.teardown(() => database.drop());

  const databaseEnv = cleanEnv(database.env);
  const userArgs = [EMAIL, '--name', 'Ada Lovelace'];
  const userCreated = await run(CREATE_USER, userArgs, databaseEnv, `${PASSWORD}\n`);
  const appCreated = await run(CREATE_APP, ['Test CLI'], databaseEnv);
  const clientId = /^client_id: (\S+)$/m.exec(appCreated.stdout)?.[1] ?? '';

  const server = await startServer(t, { database, env: serverEnv });

  const startLogin = (home: string, args: string[] = [], settings: 'env' | 'options' = 'env') => {
    if (settings === 'options') {
      const options = ['--server', server.url, '--client-id', clientId];
      const env = cleanEnv({ XDG_CONFIG_HOME: home });
      return new RunningProcess(CLI, ['login', ...options, ...args], env);
    }

    const env = cleanEnv({
      XDG_CONFIG_HOME: home,
      SPEEDGATE_SERVER: server.url,
      SPEEDGATE_CLIENT_ID: clientId,
    });
    return new RunningProcess(CLI, ['login', ...args], env);
  };

  const decide = async (t: Test, userCode: string, action: 'approve' | 'deny') => {
    const browser = new BrowserSession(server.url);
    const login = await browser.logIn(EMAIL, PASSWORD);
    t.equal(login.status, 303, 'browser login redirects');

    const review = await browser.submit('/o/device/', { user_code: userCode });
    t.equal(review.status, 200, 'review page loads');
    t.match(await review.text(), /Test CLI/, 'review page names the application');

    const done = await browser.submit('/o/device/', { user_code: userCode, action });
    t.equal(done.status, 200, `${action} page loads`);
  };

  const signIn = async (t: Test, home: string, args: string[] = []) => {
    const login = startLogin(home, args);
    await decide(t, await readUserCode(login), 'approve');
    const result = await login.exited;
    t.equal(result.code, 0, `login exits 0: ${result.stderr}`);
  };

  return { server, clientId, userCreated, appCreated, startLogin, decide, signIn };
}
