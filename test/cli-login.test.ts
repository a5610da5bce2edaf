import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { findDeviceCode, formatUserCode, normalizeUserCode } from '../src/oauth/device-codes.ts';
import {
  EMAIL,
  configHome,
  credentialsFile,
  readCredentials,
  readUserCode,
  runCli,
  startCliServer,
  waitFor,
} from './helpers/cli.ts';

// The file starts about 25 Node processes, and opening PGlite three times (two
// operator commands, then the server) took 20 to 40 seconds in trials on a
// shared machine, so allow more than the configured 120 seconds.
t.setTimeout(300_000);

const { server, clientId, userCreated, appCreated, startLogin, decide, signIn } =
  await startCliServer(t, { DEVICE_CODE_INTERVAL: '1' });

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
  await waitFor(async () => (login.stderr.includes('Waiting 6 seconds between requests') ? true : undefined), 'slow_down');

  await decide(t, formatUserCode(userCode), 'approve');
  const result = await login.exited;
  t.equal(result.code, 0, `login exits 0: ${result.stderr}`);
  t.match(result.stderr, /Waiting 6 seconds between requests/, 'slow_down adds 5 seconds');
  t.notMatch(result.stderr, /Waiting 11 seconds/, 'no second slow_down');
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
