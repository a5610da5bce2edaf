import { existsSync, writeFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { createPat, revokePat } from '../src/accounts/personal-access-tokens.ts';
import { createUser } from '../src/accounts/users.ts';
import {
  EMAIL,
  PASSWORD,
  configHome,
  credentialsFile,
  readCredentials,
  runCli,
  startCliServer,
  type ProcessResult,
} from './helpers/cli.ts';
import { freePort } from './helpers/server.ts';

// Like test/cli-login.test.ts, this file opens PGlite three times and starts
// dozens of Node processes, so it needs more than the configured 120 seconds.
t.setTimeout(300_000);

const { server, clientId, signIn } = await startCliServer(t, { DEVICE_CODE_INTERVAL: '1' });
const { db, scopes } = server.app.speedgate;

// Grace joins Ada's personal team, so `teams` has a team with two members to print.
const ada = await db
  .selectFrom('users')
  .selectAll()
  .where('email', '=', EMAIL)
  .executeTakeFirstOrThrow();
const adaTeam = await db
  .selectFrom('team_members')
  .select('team_id')
  .where('user_id', '=', ada.id)
  .executeTakeFirstOrThrow();
const grace = await createUser(
  db,
  { email: 'grace@example.com', password: PASSWORD, name: 'Grace Hopper' },
  server.clock.now(),
);
await db
  .insertInto('team_members')
  .values({
    team_id: adaTeam.team_id,
    user_id: grace.id,
    role: 'member',
    joined_at: server.clock.now(),
  })
  .execute();

const READ_SCOPES = ['read:profile', 'read:teams', 'read:products'];
const PAT_REJECTED = /error: The personal access token is invalid, expired or revoked\./;

/** Creates a personal access token for Ada with `scopeNames`, valid for 30 days from `now`. */
async function createAdaPat(scopeNames: string[], now = server.clock.now()) {
  const expiresAt = new Date(now.getTime() + 30 * 86_400_000);
  return createPat(db, scopes, ada, { name: 'CI', scopes: scopeNames, expiresAt }, now);
}

/** Runs the CLI with `token` and the server in the environment, and no stored sign-in. */
async function runWithPat(t: Test, token: string, args: string[]): Promise<ProcessResult> {
  const env = { SPEEDGATE_TOKEN: token, SPEEDGATE_SERVER: server.url };
  return runCli(configHome(t), args, env);
}

/** Asserts that a run printed no part of `token` after its prefix. */
function assertTokenHidden(t: Test, result: ProcessResult, token: string): void {
  const secret = token.slice('spd_'.length);
  t.notOk(result.stdout.includes(secret), 'stdout does not contain the token');
  t.notOk(result.stderr.includes(secret), 'stderr does not contain the token');
}

async function refreshWith(refreshToken: string): Promise<Response> {
  return fetch(`${server.url}/o/token/`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    }),
  });
}

t.test('PAT mode prints profile, teams and products', async (t) => {
  const { token } = await createAdaPat(READ_SCOPES);

  const me = await runWithPat(t, token, ['me']);
  t.equal(me.code, 0, `me exits 0: ${me.stderr}`);
  t.match(me.stdout, /^Name: +Ada Lovelace$/m);
  t.match(me.stdout, /^Email: +ada@example\.com$/m);
  assertTokenHidden(t, me, token);

  const teams = await runWithPat(t, token, ['teams']);
  t.equal(teams.code, 0, `teams exits 0: ${teams.stderr}`);
  const expectedTeams = [
    `Ada Lovelace's team (id ${adaTeam.team_id})`,
    '  Ada Lovelace <ada@example.com>, owner',
    '  Grace Hopper <grace@example.com>, member',
    '',
  ].join('\n');
  t.equal(teams.stdout, expectedTeams, 'teams prints the team and both members');
  t.notMatch(teams.stdout, /Grace Hopper's team/, 'teams leaves out teams Ada is not in');
  assertTokenHidden(t, teams, token);

  const products = await runWithPat(t, token, ['products']);
  t.equal(products.code, 0, `products exits 0: ${products.stderr}`);
  const lines = products.stdout.trimEnd().split('\n');
  t.equal(lines.length, 4, 'a header and three products');
  t.match(lines[0], /^ID +NAME +PRICE +DESCRIPTION$/);
  t.match(lines[1], /^prod_starter +Starter +0\.00 +One project, community support$/);
  t.match(lines[2], /^prod_team +Team +49\.00 +Unlimited projects for up to 20 members$/);
  t.match(lines[3], /^prod_enterprise +Enterprise +499\.00 +Single sign-on/);
  assertTokenHidden(t, products, token);
});

t.test('PAT mode with --json', async (t) => {
  const { token } = await createAdaPat(READ_SCOPES);

  const teams = await runWithPat(t, token, ['teams', '--json']);
  t.equal(teams.code, 0, `teams --json exits 0: ${teams.stderr}`);
  const [team] = JSON.parse(teams.stdout).teams;
  t.equal(team.id, adaTeam.team_id);
  t.same(
    team.members.map((member: { email: string; role: string }) => [member.email, member.role]),
    [
      ['ada@example.com', 'owner'],
      ['grace@example.com', 'member'],
    ],
  );

  const products = await runWithPat(t, token, ['products', '--json']);
  t.equal(products.code, 0, `products --json exits 0: ${products.stderr}`);
  const ids = JSON.parse(products.stdout).products.map((product: { id: string }) => product.id);
  t.same(ids, ['prod_starter', 'prod_team', 'prod_enterprise']);
});

t.test('PAT options win over the environment', async (t) => {
  const good = await createAdaPat(READ_SCOPES);
  const revoked = await createAdaPat(READ_SCOPES);
  await revokePat(db, ada.id, revoked.row.id, server.clock.now());

  const env = { SPEEDGATE_TOKEN: revoked.token, SPEEDGATE_SERVER: 'not a url' };
  const args = ['me', '--token', good.token, '--server', server.url];
  const result = await runCli(configHome(t), args, env);
  t.equal(result.code, 0, `me exits 0: ${result.stderr}`);
  t.match(result.stdout, /ada@example\.com/);
  assertTokenHidden(t, result, good.token);
});

t.test('PAT mode ignores the stored sign-in', async (t) => {
  const home = configHome(t);
  await signIn(t, home);
  const { token } = await createAdaPat(['read:profile']);

  // This token lacks read:teams, although the stored tokens have it.
  const env = { SPEEDGATE_TOKEN: token, SPEEDGATE_SERVER: server.url };
  const result = await runCli(home, ['teams'], env);
  t.equal(result.code, 1, 'teams exits 1');
  t.match(result.stderr, /personal access token lacks the scope read:teams/);
});

t.test('PAT without read:teams', async (t) => {
  const { token } = await createAdaPat(['read:profile']);

  const teams = await runWithPat(t, token, ['teams']);
  t.equal(teams.code, 1, 'teams exits 1');
  t.equal(teams.stdout, '', 'teams prints nothing on stdout');
  const advice = `Create a token with read:teams at ${server.url}/accounts/tokens/.`;
  const message = `error: The personal access token lacks the scope read:teams. ${advice}\n`;
  t.equal(teams.stderr, message);
  assertTokenHidden(t, teams, token);

  const me = await runWithPat(t, token, ['me']);
  t.equal(me.code, 0, `me exits 0 with read:profile: ${me.stderr}`);
});

t.test('PAT rejected by the server', async (t) => {
  const revoked = await createAdaPat(READ_SCOPES);
  await revokePat(db, ada.id, revoked.row.id, server.clock.now());

  // Created 31 days ago with a 30-day lifetime, so it expired yesterday.
  const longAgo = new Date(server.clock.now().getTime() - 31 * 86_400_000);
  const expired = await createAdaPat(READ_SCOPES, longAgo);

  // Changing one character of the random part breaks the checksum.
  const { token } = await createAdaPat(READ_SCOPES);
  const changed = token[4] === 'A' ? 'B' : 'A';
  const mistyped = `spd_${changed}${token.slice(5)}`;

  const cases = [
    ['revoked', revoked.token],
    ['expired', expired.token],
    ['mistyped', mistyped],
    ['truncated', token.slice(0, 20)],
  ];
  for (const [name, value] of cases) {
    const result = await runWithPat(t, value, ['me']);
    t.equal(result.code, 1, `${name} token: me exits 1`);
    t.match(result.stderr, PAT_REJECTED, `${name} token: stderr names the cause`);
    const page = `${server.url}/accounts/tokens/`;
    t.match(result.stderr, page, `${name} token: stderr names the tokens page`);
    assertTokenHidden(t, result, value);
  }
});

t.test('PAT usage errors', async (t) => {
  const home = configHome(t);
  const { token } = await createAdaPat(READ_SCOPES);
  const notPat = 'ghp_0123456789abcdefghijklmnopqrstuvwxyz';
  const withServer = { SPEEDGATE_SERVER: server.url };

  const flag = await runCli(home, ['me', '--token', notPat], withServer);
  t.equal(flag.code, 2, 'a --token without spd_ exits 2');
  t.match(flag.stderr, /The value of --token is not a personal access token/);
  t.notOk(flag.stderr.includes(notPat), 'stderr does not contain the rejected token');

  const variable = await runCli(home, ['teams'], { ...withServer, SPEEDGATE_TOKEN: notPat });
  t.equal(variable.code, 2, 'a SPEEDGATE_TOKEN without spd_ exits 2');
  t.match(variable.stderr, /The value of SPEEDGATE_TOKEN is not a personal access token/);
  t.notOk(variable.stderr.includes(notPat), 'stderr does not contain the rejected token');

  const empty = await runCli(home, ['me', '--token', ''], withServer);
  t.equal(empty.code, 2, 'an empty --token exits 2');

  const characters = await runCli(home, ['me', '--token', `${token}!`], withServer);
  t.equal(characters.code, 2, 'a token with other characters exits 2');
  t.match(characters.stderr, /contains characters that a personal access token never has/);
  assertTokenHidden(t, characters, token);

  const noServer = await runCli(home, ['products', '--token', token]);
  t.equal(noServer.code, 2, 'a token without a server exits 2');
  t.match(noServer.stderr, /Missing --server/);

  // A token typed without --token is a positional argument, which parseArgs repeats in its error.
  const positional = await runCli(home, ['me', token], withServer);
  t.equal(positional.code, 2, 'a positional argument exits 2');
  t.match(positional.stderr, /spd_…/, 'stderr shows the token redacted');
  assertTokenHidden(t, positional, token);

  const unset = await runCli(home, ['me'], { ...withServer, SPEEDGATE_TOKEN: '' });
  t.equal(unset.code, 1, 'an empty SPEEDGATE_TOKEN falls back to the stored sign-in');
  t.match(unset.stderr, /Not signed in\. .* --token or SPEEDGATE_TOKEN/);
});

t.test('teams and products after login', async (t) => {
  const home = configHome(t);
  await signIn(t, home);

  const teams = await runCli(home, ['teams']);
  t.equal(teams.code, 0, `teams exits 0: ${teams.stderr}`);
  t.match(teams.stdout, /^Ada Lovelace's team \(id /m);
  t.match(teams.stdout, /^ {2}Grace Hopper <grace@example\.com>, member$/m);

  const products = await runCli(home, ['products', '--server', server.url]);
  t.equal(products.code, 0, `products exits 0: ${products.stderr}`);
  t.match(products.stdout, /^prod_team +Team +49\.00 /m);

  const json = await runCli(home, ['products', '--json']);
  t.equal(json.code, 0, `products --json exits 0: ${json.stderr}`);
  t.equal(JSON.parse(json.stdout).products.length, 3);

  const otherServer = 'http://127.0.0.1:1';
  const mismatch = await runCli(home, ['teams', '--server', otherServer]);
  t.equal(mismatch.code, 1, 'a --server other than the stored one exits 1');
  t.match(mismatch.stderr, `The stored sign-in is for ${server.url}, not ${otherServer}`);
});

t.test('teams after login without read:teams', async (t) => {
  const home = configHome(t);
  await signIn(t, home, ['--scope', 'read:profile']);

  const teams = await runCli(home, ['teams']);
  t.equal(teams.code, 1, 'teams exits 1');
  const advice = 'Run speedgate-cli login --scope "read:profile read:teams" to request it.';
  t.equal(teams.stderr, `error: The access token lacks the scope read:teams. ${advice}\n`);
});

t.test('logout revokes the refresh token', async (t) => {
  const home = configHome(t);
  await signIn(t, home);
  const stored = readCredentials(home);

  const logout = await runCli(home, ['logout']);
  t.equal(logout.code, 0, `logout exits 0: ${logout.stderr}`);
  t.match(logout.stdout, `Signed out of ${server.url}. Revoked the tokens and deleted`);
  t.notOk(existsSync(credentialsFile(home)), 'the credentials file is deleted');

  const refresh = await refreshWith(stored.refresh_token);
  t.equal(refresh.status, 400, 'the server rejects the revoked refresh token');
  t.same(await refresh.json(), {
    error: 'invalid_grant',
    error_description: 'The refresh_token is invalid, expired or revoked',
  });

  const api = await fetch(`${server.url}/api/v1/me/`, {
    headers: { authorization: `Bearer ${stored.access_token}` },
  });
  t.equal(api.status, 401, 'the API rejects the access token of the revoked authorization');

  const me = await runCli(home, ['me']);
  t.equal(me.code, 1, 'me exits 1 after logout');
  t.match(me.stderr, /Not signed in/);
});

t.test('logout with the server unreachable', async (t) => {
  const home = configHome(t);
  await signIn(t, home);
  const stored = readCredentials(home);

  // Nothing listens on this loopback port, so the revocation request fails to connect.
  const closed = `http://127.0.0.1:${await freePort()}`;
  writeFileSync(credentialsFile(home), JSON.stringify({ ...stored, server: closed }));

  const logout = await runCli(home, ['logout']);
  t.equal(logout.code, 1, 'logout exits 1');
  t.match(logout.stderr, `could not revoke the tokens at ${closed}: Could not reach`);
  t.match(logout.stderr, /The tokens may still be valid until they expire/);
  t.match(logout.stderr, `${closed}/accounts/applications/`);
  t.notOk(existsSync(credentialsFile(home)), 'the credentials file is deleted anyway');

  const refresh = await refreshWith(stored.refresh_token);
  t.equal(refresh.status, 200, 'the refresh token is indeed still valid');
});

t.test('logout without a usable sign-in', async (t) => {
  const home = configHome(t);

  const signedOut = await runCli(home, ['logout']);
  t.equal(signedOut.code, 0, 'logout exits 0 when signed out');
  t.match(signedOut.stdout, /Not signed in: there is no .*credentials\.json\. Nothing to do\./);

  await signIn(t, home);
  writeFileSync(credentialsFile(home), 'not json');
  const corrupt = await runCli(home, ['logout']);
  t.equal(corrupt.code, 1, 'logout exits 1 for an unreadable file');
  t.match(corrupt.stderr, /without revoking a token, because it was unreadable/);
  t.notOk(existsSync(credentialsFile(home)), 'the unreadable file is deleted');
});

t.test('help for the new commands', async (t) => {
  const home = configHome(t);

  const [help, teamsHelp, productsHelp, logoutHelp, extra] = await Promise.all([
    runCli(home, ['--help']),
    runCli(home, ['teams', '--help']),
    runCli(home, ['help', 'products']),
    runCli(home, ['logout', '-h']),
    runCli(home, ['logout', 'now']),
  ]);

  t.equal(help.code, 0);
  t.match(help.stdout, /^ {2}teams +Print the user's teams/m);
  t.match(help.stdout, /^ {2}products +Print the product catalogue/m);
  t.match(help.stdout, /^ {2}logout +Revoke the stored tokens/m);
  t.match(help.stdout, /^ {2}SPEEDGATE_TOKEN +Personal access token/m);

  t.equal(teamsHelp.code, 0);
  t.match(teamsHelp.stdout, /read:teams/);
  t.match(teamsHelp.stdout, /--token TOKEN/);
  t.match(teamsHelp.stdout, /--json/);

  t.equal(productsHelp.code, 0);
  t.match(productsHelp.stdout, /read:products/);

  t.equal(logoutHelp.code, 0);
  t.match(logoutHelp.stdout, /RFC 7009/);

  t.equal(extra.code, 2, 'logout takes no arguments');
  t.match(extra.stderr, /Run speedgate-cli logout --help/);
});
