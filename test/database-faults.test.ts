import pg from 'pg';
import t, { type Test } from 'tap';
import { sha256Hex } from '../src/oauth/secrets.ts';
import { startServer } from './helpers/server.ts';
import { basicAuthorization, createTestClient, issueTestTokens, postForm, type JsonResponse } from './helpers/tokens.ts';

const serverUrl = process.env.DATABASE_URL;

/** Rounds of requests. In each, three client_credentials requests run beside one step of a refresh chain. */
const ROUNDS = 60;
const CLIENT_CREDENTIALS_PER_ROUND = 3;
/** Rounds in which every server connection is terminated while that round's requests are in flight. */
const KILL_ROUNDS = new Set([8, 20, 32, 44]);

const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'The service is briefly unavailable; retry in a moment' };

if (!serverUrl) {
  t.comment('database fault tests need PostgreSQL: set DATABASE_URL to run them');
  t.pass('skipped without DATABASE_URL');
} else {
  await runFaultTests();
}

/** Checks that a response is a success, a client error or a clean 503, and returns the problem if not. */
function checkAnswer(result: JsonResponse): string | undefined {
  if (result.status === 200 || (result.status >= 400 && result.status < 500)) return undefined;
  if (result.status !== 503) return `status ${result.status}: ${JSON.stringify(result.body)}`;
  if (JSON.stringify(result.body) !== JSON.stringify(UNAVAILABLE)) return `503 with body ${JSON.stringify(result.body)}`;
  if (result.headers.get('retry-after') !== '1') return `503 with Retry-After ${result.headers.get('retry-after')}`;
  return undefined;
}

async function runFaultTests(): Promise<void> {
  const server = await startServer(t);
  const { db } = server.app.speedgate;
  const tokenUrl = `${server.url}/o/token/`;

  const service = await createTestClient(server, { name: 'Fault service', grantTypes: ['client_credentials'], confidential: true });
  const serviceAuthorization = { authorization: basicAuthorization(service.client.id, service.clientSecret ?? '') };
  const chain = await issueTestTokens(server);

  // A connection of our own to the test database, whose backend the termination spares.
  const admin = new pg.Client({ connectionString: server.database.databaseUrl });
  await admin.connect();
  t.teardown(() => admin.end());

  async function terminateServerConnections(): Promise<number[]> {
    const result = await admin.query<{ pid: number }>(
      'select pid, pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
    );
    return result.rows.map((row) => row.pid);
  }

  // A terminated backend leaves pg_stat_activity once it has sent its termination message.
  async function waitForBackendsToExit(pids: number[]): Promise<void> {
    const deadline = Date.now() + 10_000;
    const query = 'select count(*)::int as count from pg_stat_activity where pid = any($1)';
    while ((await admin.query(query, [pids])).rows[0].count > 0) {
      if (Date.now() > deadline) throw new Error(`backends ${pids.join(', ')} still running 10 s after termination`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  t.test('token requests survive killed connections', async (t: Test) => {
    const problems: string[] = [];
    const statuses: Record<number, number> = {};
    const accessTokenIds = new Set<string>();
    const terminated: number[] = [];
    let successes = 0;

    let current = chain.refreshToken ?? '';
    const seenRefreshTokens = [current];
    let chainBroken: JsonResponse | undefined;

    const record = (label: string, result: JsonResponse) => {
      statuses[result.status] = (statuses[result.status] ?? 0) + 1;
      const problem = checkAnswer(result);
      if (problem !== undefined) problems.push(`${label}: ${problem}`);
      if (result.status !== 200) return;
      successes += 1;
      const jti = JSON.parse(Buffer.from(result.body.access_token.split('.')[1], 'base64url').toString('utf8')).jti;
      if (accessTokenIds.has(jti)) problems.push(`${label}: access token id ${jti} issued twice`);
      accessTokenIds.add(jti);
    };

    const refreshStep = async (round: number) => {
      if (chainBroken !== undefined) return;
      const result = await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: current, client_id: chain.clientId });
      record(`round ${round} refresh`, result);
      if (result.status === 200) {
        // A retry of a rotation that committed but lost its response returns that rotation's result.
        if (result.body.refresh_token !== current && !seenRefreshTokens.includes(result.body.refresh_token)) {
          seenRefreshTokens.push(result.body.refresh_token);
        }
        current = result.body.refresh_token;
      } else if (result.status !== 503) {
        chainBroken = result;
      }
    };

    for (let round = 0; round < ROUNDS; round++) {
      const requests: Promise<unknown>[] = [refreshStep(round)];
      for (let index = 0; index < CLIENT_CREDENTIALS_PER_ROUND; index++) {
        requests.push(postForm(tokenUrl, { grant_type: 'client_credentials' }, serviceAuthorization).then((result) => record(`round ${round} client_credentials`, result)));
      }
      if (KILL_ROUNDS.has(round)) requests.push(terminateServerConnections().then((pids) => terminated.push(...pids)));
      await Promise.all(requests);
    }

    t.strictSame(problems, [], 'every answer was a 200, a 4xx or a clean 503, and no access token was issued twice');
    t.ok(terminated.length >= KILL_ROUNDS.size, `terminated ${terminated.length} server connections in ${KILL_ROUNDS.size} rounds`);
    t.ok((statuses[503] ?? 0) > 0, `some requests met a dead connection (statuses ${JSON.stringify(statuses)})`);
    t.ok(successes > ROUNDS, 'most requests succeeded');
    t.equal(chainBroken, undefined, `the refresh chain never got a client error (${JSON.stringify(chainBroken?.body)})`);

    await waitForBackendsToExit(terminated);
    // One turn of the event loop lets the pool read the termination messages of idle connections.
    await new Promise((resolve) => setTimeout(resolve, 0));

    for (let attempt = 0; attempt < 5; attempt++) {
      const result = await postForm(tokenUrl, { grant_type: 'client_credentials' }, serviceAuthorization);
      t.equal(result.status, 200, `client_credentials request ${attempt + 1} after the faults succeeds`);
    }
    await refreshStep(ROUNDS);
    t.equal(chainBroken, undefined, 'the refresh chain continues after the faults');

    const grant = await db
      .selectFrom('refresh_tokens')
      .select('grant_id')
      .where('token_hash', '=', sha256Hex(chain.refreshToken ?? ''))
      .executeTakeFirstOrThrow();
    const rows = await db.selectFrom('refresh_tokens').selectAll().where('grant_id', '=', grant.grant_id).execute();
    t.equal(rows.length, seenRefreshTokens.length, 'one refresh token row for each token the client received, none lost or extra');
    t.strictSame(
      rows.filter((row) => row.revoked_at !== null),
      [],
      'no refresh token was revoked, so no retry was taken for reuse',
    );
    const live = rows.filter((row) => row.rotated_at === null);
    t.equal(live.length, 1, 'exactly one live refresh token');
    t.equal(live[0]?.token_hash, sha256Hex(current), 'the live token is the one the client holds');

    const serviceGrants = await db
      .selectFrom('grants')
      .select('id')
      .where('client_id', '=', service.client.id)
      .where('revoked_at', 'is', null)
      .execute();
    t.equal(serviceGrants.length, 1, 'concurrent client_credentials requests share one authorization');
  });
}
