import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { findDeviceCode, formatUserCode, normalizeUserCode } from '../src/oauth/device-codes.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { createTestDatabase } from './helpers/database.ts';
import { startServer, type TestServer } from './helpers/server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// The operator commands and the example CLI, run through their executable wrappers as a user would.
const CREATE_USER = 'bin/create-user';
const CREATE_APP = 'bin/create-oauth2-app';
const CLI = 'examples/cli/speedgate-cli';
const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery';

/** Time limit of each child process. A hang then fails the test instead of blocking it. */
const PROCESS_TIMEOUT_MS = 60_000;

interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Child processes still running, stopped when the file's tests end even if one failed early. */
const runningProcesses = new Set<ChildProcess>();
t.teardown(() => {
  for (const child of runningProcesses) child.kill();
});

/** A child process whose output is collected as it arrives. */
class RunningProcess {
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

async function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input?: string,
): Promise<ProcessResult> {
  return new RunningProcess(command, args, env, input).exited;
}

/** Returns the parent's environment without SPEEDGATE_ variables, plus `extra`. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('SPEEDGATE_'));
  return { ...Object.fromEntries(inherited), ...extra };
}

/** Creates a folder for XDG_CONFIG_HOME, removed when `t` ends. */
function configHome(t: Test): string {
  const folder = mkdtempSync(path.join(tmpdir(), 'speedgate-cli-test-'));
  t.teardown(() => rmSync(folder, { recursive: true, force: true }));
  return folder;
}

function credentialsFile(home: string): string {
  return path.join(home, 'speedgate-cli', 'credentials.json');
}

function readCredentials(home: string): Record<string, string> {
  return JSON.parse(readFileSync(credentialsFile(home), 'utf8'));
}

/** Calls `read` until it returns a value, for up to 20 seconds. */
async function waitFor<T>(read: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// The file starts about 25 Node processes, and opening PGlite three times (two
// operator commands, then the server) took 20 to 40 seconds in trials on a
// shared machine, so allow more than the configured 120 seconds.
t.setTimeout(300_000);

// PGlite serves one process at a time, so the operator commands run before the server starts.
const database = await createTestDatabase({ onDisk: true });
t.teardown(() => database.drop());

const databaseEnv = cleanEnv(database.env);
const userArgs = [EMAIL, '--name', 'Ada Lovelace'];
const userCreated = await run(CREATE_USER, userArgs, databaseEnv, `${PASSWORD}\n`);
const appCreated = await run(CREATE_APP, ['Test CLI'], databaseEnv);
const clientId = /^client_id: (\S+)$/m.exec(appCreated.stdout)?.[1] ?? '';

const server: TestServer = await startServer(t, { database, env: { DEVICE_CODE_INTERVAL: '1' } });

/** Starts `login`, given the server and client id through the environment or as options. */
function startLogin(
  home: string,
  args: string[] = [],
  settings: 'env' | 'options' = 'env',
): RunningProcess {
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
}

async function runCli(home: string, args: string[]): Promise<ProcessResult> {
  return run(CLI, args, cleanEnv({ XDG_CONFIG_HOME: home }));
}

async function readUserCode(login: RunningProcess): Promise<string> {
  const match = await login.waitForOutput(/enter the code ([A-Z]{4}-[A-Z]{4})\n/);
  return match[1];
}

/** Logs in as the test user in a fresh browser session and decides on `userCode`. */
async function decide(t: Test, userCode: string, action: 'approve' | 'deny'): Promise<void> {
  const browser = new BrowserSession(server.url);
  const login = await browser.logIn(EMAIL, PASSWORD);
  t.equal(login.status, 303, 'browser login redirects');

  const review = await browser.submit('/o/device/', { user_code: userCode });
  t.equal(review.status, 200, 'review page loads');
  t.match(await review.text(), /Test CLI/, 'review page names the application');

  const done = await browser.submit('/o/device/', { user_code: userCode, action });
  t.equal(done.status, 200, `${action} page loads`);
}

/** Runs `login` to completion with approval, so each test starts signed in. */
async function signIn(t: Test, home: string): Promise<void> {
  const login = startLogin(home);
  await decide(t, await readUserCode(login), 'approve');
  const result = await login.exited;
  t.equal(result.code, 0, `login exits 0: ${result.stderr}`);
}

t.test('operator commands', async (t) => {
  t.equal(userCreated.code, 0, `create-user exits 0: ${userCreated.stderr}`);
  t.equal(appCreated.code, 0, `create-oauth2-app exits 0: ${appCreated.stderr}`);
  t.not(clientId, '', 'create-oauth2-app prints the client_id');
});

t.test('login with approval', async (t) => {
  const home = configHome(t);
  const login = startLogin(home, ['--scope', 'read:profile read:teams'], 'options');

  const userCode = await readUserCode(login);
  t.match(login.stdout, `Open ${server.url}/o/device/ and enter the code ${userCode}`);
  t.match(login.stdout, `${server.url}/o/device/?user_code=${userCode}`);

  await decide(t, userCode, 'approve');
  const result = await login.exited;
  t.equal(result.code, 0, `login exits 0: ${result.stderr}`);
  t.match(result.stdout, /Signed in to .* with scope "read:profile read:teams"/);

  const file = credentialsFile(home);
  t.equal(statSync(file).mode & 0o777, 0o600, 'credentials file mode is 0600');
  t.equal(statSync(path.dirname(file)).mode & 0o777, 0o700, 'credentials folder mode is 0700');

  const stored = readCredentials(home);
  t.equal(stored.server, server.url);
  t.equal(stored.client_id, clientId);
  t.equal(stored.scope, 'read:profile read:teams');
  t.match(stored.access_token, /^ey/);
  t.match(stored.refresh_token, /^sgr_/);
  t.ok(Date.parse(stored.expires_at) > Date.now(), 'expiry is in the future');

  const me = await runCli(home, ['me']);
  t.equal(me.code, 0, `me exits 0: ${me.stderr}`);
  t.match(me.stdout, /^Name: +Ada Lovelace$/m);
  t.match(me.stdout, /^Email: +ada@example\.com$/m);

  const json = await runCli(home, ['me', '--json']);
  t.equal(json.code, 0, `me --json exits 0: ${json.stderr}`);
  t.equal(JSON.parse(json.stdout).email, EMAIL);
});

t.test('login with denial', async (t) => {
  const home = configHome(t);
  const login = startLogin(home);

  await decide(t, await readUserCode(login), 'deny');
  const result = await login.exited;
  t.equal(result.code, 1, 'login exits 1');
  t.match(result.stderr, /access denied/i);
  t.throws(() => statSync(credentialsFile(home)), { code: 'ENOENT' }, 'no credentials are stored');
});

t.test('me refreshes by stored expiry', async (t) => {
  const home = configHome(t);
  await signIn(t, home);
  const before = readCredentials(home);
  const expired = { ...before, expires_at: new Date(0).toISOString() };
  writeFileSync(credentialsFile(home), JSON.stringify(expired));

  const me = await runCli(home, ['me']);
  t.equal(me.code, 0, `me exits 0: ${me.stderr}`);
  t.match(me.stdout, /ada@example\.com/);

  const after = readCredentials(home);
  t.not(after.refresh_token, before.refresh_token, 'refresh token is rotated');
  t.not(after.access_token, before.access_token, 'access token is replaced');
  t.ok(Date.parse(after.expires_at) > Date.now(), 'new expiry is in the future');
  t.equal(statSync(credentialsFile(home)).mode & 0o777, 0o600, 'rewritten file mode is 0600');
});

t.test('me refreshes after a 401', async (t) => {
  const home = configHome(t);
  await signIn(t, home);
  const before = readCredentials(home);

  // The stored expiry still lies ahead, but the server's clock has passed the token's exp.
  server.clock.advance(server.config.accessTokenTtlSeconds + 60);
  const me = await runCli(home, ['me']);
  t.equal(me.code, 0, `me exits 0: ${me.stderr}`);
  t.match(me.stdout, /ada@example\.com/);

  const after = readCredentials(home);
  t.not(after.refresh_token, before.refresh_token, 'refresh token is rotated');
  t.not(after.access_token, before.access_token, 'access token is replaced');
});

t.test('me with a rotated refresh token', async (t) => {
  const home = configHome(t);
  await signIn(t, home);
  const expired = { ...readCredentials(home), expires_at: new Date(0).toISOString() };
  writeFileSync(credentialsFile(home), JSON.stringify(expired));

  const first = await runCli(home, ['me']);
  t.equal(first.code, 0, `first me exits 0: ${first.stderr}`);

  // Putting back the refresh token that the first run rotated makes the next run replay it.
  // The server accepts a replay only inside its grace window (REFRESH_GRACE_PERIOD, at most
  // 600 seconds), so move its clock past that.
  server.clock.advance(601);
  writeFileSync(credentialsFile(home), JSON.stringify(expired));
  const replay = await runCli(home, ['me']);
  t.equal(replay.code, 1, 'me exits 1');
  t.match(replay.stderr, /Could not refresh the access token: .*\(invalid_grant\)/);
  t.match(replay.stderr, /Run speedgate-cli login to sign in again/);
});

t.test('login after slow_down', async (t) => {
  const home = configHome(t);
  const login = startLogin(home);
  const userCode = normalizeUserCode(await readUserCode(login)) ?? '';
  const { db } = server.app.speedgate;

  await waitFor(async () => {
    const row = await findDeviceCode(db, userCode);
    return row?.last_polled_at ?? undefined;
  }, 'a first poll');
  // Moving the server's clock back makes the next poll look early, so the server returns slow_down.
  server.clock.advance(-30);
  const slowed = await waitFor(async () => {
    const row = await findDeviceCode(db, userCode);
    return row !== undefined && row.interval_seconds > 1 ? row : undefined;
  }, 'slow_down');
  t.equal(slowed.interval_seconds, 6, 'slow_down adds 5 seconds');

  await decide(t, formatUserCode(userCode), 'approve');
  const result = await login.exited;
  t.equal(result.code, 0, `login exits 0: ${result.stderr}`);
  t.match(result.stderr, /Waiting 6 seconds between requests/);
  const row = await findDeviceCode(db, userCode);
  t.equal(row?.interval_seconds, 6, 'no second slow_down');
});

t.test('login with an expired code', async (t) => {
  const home = configHome(t);
  const login = startLogin(home);
  await readUserCode(login);

  server.clock.advance(server.config.deviceCodeTtlSeconds + 1);
  const result = await login.exited;
  t.equal(result.code, 1, 'login exits 1');
  t.match(result.stderr, /The code expired before it was approved/);
});

t.test('help and usage errors', async (t) => {
  const home = configHome(t);

  const [help, loginHelp, meHelp, unknown, missing, signedOut] = await Promise.all([
    runCli(home, ['--help']),
    runCli(home, ['login', '--help']),
    runCli(home, ['me', '--help']),
    runCli(home, ['logn']),
    runCli(home, ['login']),
    runCli(home, ['me']),
  ]);

  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: speedgate-cli COMMAND/);
  t.match(help.stdout, /login +Sign in/);

  t.equal(loginHelp.code, 0);
  t.match(loginHelp.stdout, /--client-id ID/);

  t.equal(meHelp.code, 0);
  t.match(meHelp.stdout, /--json/);

  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /Unknown command "logn"/);

  t.equal(missing.code, 2);
  t.match(missing.stderr, /Missing --server/);

  t.equal(signedOut.code, 1);
  t.match(signedOut.stderr, /Not signed in/);
});
