import t from 'tap';
import { rotateSigningKey } from '../src/oauth/keys.ts';
import { sha256Hex } from '../src/oauth/secrets.ts';
import { waitFor } from './helpers/cli.ts';
import { decodeJwt, PASSWORD } from './helpers/authorization.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { createTestDatabase } from './helpers/database.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import {
  basicAuthorization,
  createTestClient,
  createTestUser,
  decideDevice,
  DEVICE_GRANT,
  issueTestTokens,
  postForm,
  redeemDevice,
  startDevice,
} from './helpers/tokens.ts';

// Two nodes need one database that both reach: PGlite is embedded in one process.
if (!process.env.DATABASE_URL) {
  t.comment('two-node tests need PostgreSQL: set DATABASE_URL to run them');
  t.pass('skipped without DATABASE_URL');
} else {
  await runTwoNodeTests();
}

/** Returns the address a node listens on, which differs from the issuer both nodes share. */
function nodeUrl(server: TestServer): string {
  const address = server.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the node is not listening on a TCP port');
  return `http://127.0.0.1:${address.port}`;
}

async function jwksKids(url: string): Promise<string[]> {
  const response = await fetch(`${url}/.well-known/jwks.json`);
  const jwks = (await response.json()) as { keys: { kid: string }[] };
  return jwks.keys.map((key) => key.kid).sort();
}

async function apiStatus(url: string, accessToken: string): Promise<number> {
  const response = await fetch(`${url}/api/v1/me/`, { headers: { authorization: `Bearer ${accessToken}` } });
  await response.arrayBuffer();
  return response.status;
}

async function runTwoNodeTests(): Promise<void> {
  const database = await createTestDatabase();
  // Both nodes serve one issuer, as behind a load balancer, and each listens on its own port.
  const nodeA = await startServer(t, { database });
  const nodeB = await startServer(t, { database, env: { ISSUER: nodeA.config.issuer } });
  const nodeBKeysLoadedBy = Date.now();
  // Registered after the servers' own teardowns, so the database is dropped once both have closed.
  t.teardown(() => database.drop());

  const urlA = nodeUrl(nodeA);
  const urlB = nodeUrl(nodeB);
  const { client } = await createTestClient(nodeA);
  const email = `two-nodes-${Date.now()}@example.com`;
  await createTestUser(nodeA, email);

  /** Moves both nodes' clocks together, as real nodes share the wall clock. */
  function advanceBoth(seconds: number): void {
    nodeA.clock.advance(seconds);
    nodeB.clock.advance(seconds);
  }

  let accessToken = '';

  t.test('device flow across two nodes', async (t) => {
    const started = await postForm(`${urlA}/o/device-authorization/`, { client_id: client.id });
    t.equal(started.status, 200, 'node A starts the device flow');
    t.equal(started.body.verification_uri, `${nodeA.config.issuer}/o/device/`);

    const poll = (url: string) => postForm(`${url}/o/token/`, { grant_type: DEVICE_GRANT, device_code: started.body.device_code, client_id: client.id });
    const pending = await poll(urlA);
    t.equal(pending.status, 400);
    t.strictSame(pending.body, { error: 'authorization_pending', error_description: 'The user has not yet approved the request' });

    // The user signs in and approves on node B.
    const browser = new BrowserSession(urlB);
    const login = await browser.logIn(email, PASSWORD);
    t.equal(login.status, 303, 'node B signs the user in');
    const confirm = await browser.submit('/o/device/', { user_code: started.body.user_code });
    t.equal(confirm.status, 200, "node B shows node A's request for approval");
    const confirmHtml = await confirm.text();
    t.match(confirmHtml, 'Test CLI', 'the confirmation names the client');

    const approved = await browser.submit(`/o/device/?user_code=${encodeURIComponent(started.body.user_code)}`, {
      user_code: started.body.user_code,
      action: 'approve',
    });
    t.equal(approved.status, 200, 'node B records the approval');
    await approved.arrayBuffer();

    advanceBoth(6);
    const issued = await poll(urlB);
    t.equal(issued.status, 200, 'node B issues the tokens');
    t.equal(issued.body.token_type, 'Bearer');
    accessToken = issued.body.access_token;

    advanceBoth(6);
    const again = await poll(urlA);
    t.equal(again.status, 400, 'node A knows the device code was consumed on node B');
    t.strictSame(again.body, { error: 'invalid_grant', error_description: 'The device_code has already been used' });

    t.equal(await apiStatus(urlA, accessToken), 200, "node A accepts node B's access token");
    t.equal(await apiStatus(urlB, accessToken), 200, 'node B accepts its own access token');
  });

  t.test('approval on one node reaches a polling node', async (t) => {
    const user = await createTestUser(nodeA);
    const start = await startDevice(nodeA, client.id);
    const first = await redeemDevice(nodeA, client.id, start.deviceCode);
    t.equal(first.body.error, 'authorization_pending', 'node A remembers the pending code');

    await decideDevice(nodeB, start, user.id);
    // Node A hears of the decision through NOTIFY, a few milliseconds after the commit.
    const codeHash = sha256Hex(start.deviceCode);
    await waitFor(async () => (nodeA.app.speedgate.cache.devicePolls.get(codeHash) === undefined ? true : undefined), 'the announcement on node A');
    advanceBoth(6);
    const issued = await redeemDevice(nodeA, client.id, start.deviceCode);
    t.equal(issued.status, 200, "node A hears of node B's approval");
  });

  t.test('revocation on one node applies to both', async (t) => {
    // Both nodes have just accepted the token, so any cache they keep is warm.
    t.equal(await apiStatus(urlB, accessToken), 200);

    const revoked = await postForm(`${urlA}/o/revoke_token/`, { token: accessToken, client_id: client.id });
    t.equal(revoked.status, 200, 'node A revokes the token');
    t.equal(await apiStatus(urlB, accessToken), 401, 'node B rejects it on the very next request');
    t.equal(await apiStatus(urlA, accessToken), 401, 'node A rejects it too');
  });

  t.test('repeated revocations reach the other node', async (t) => {
    // A cache on node B that learns of revocations asynchronously would let some of these through.
    const user = await createTestUser(nodeA);
    const outcomes: number[] = [];
    for (let round = 0; round < 10; round++) {
      const tokens = await issueTestTokens(nodeA, { user, clientId: client.id });
      await apiStatus(urlB, tokens.accessToken);
      await postForm(`${urlA}/o/revoke_token/`, { token: tokens.accessToken, client_id: client.id });
      outcomes.push(await apiStatus(urlB, tokens.accessToken));
    }
    t.strictSame(outcomes, Array(10).fill(401), 'node B rejected every token right after node A revoked it');
  });

  t.test('rotated key verifies on both nodes', async (t) => {
    const service = await createTestClient(nodeA, { name: 'Two-node service', grantTypes: ['client_credentials'], confidential: true });
    const credentials = { grant_type: 'client_credentials', client_id: service.client.id, client_secret: service.clientSecret ?? '' };

    const before = await postForm(`${urlA}/o/token/`, credentials);
    t.equal(before.status, 200);
    const oldKid = decodeJwt(before.body.access_token).header.kid;

    const newKid = await rotateSigningKey(nodeA.app.speedgate.db, nodeA.clock.now());
    t.not(newKid, oldKid);
    await nodeA.app.speedgate.keys.reload();

    const after = await postForm(`${urlA}/o/token/`, credentials);
    t.equal(after.status, 200);
    t.equal(decodeJwt(after.body.access_token).header.kid, newKid, 'node A signs with the new key after its reload');

    // Node B has not reloaded, so the unknown kid makes it reload once. It
    // reloads at most once a second by the wall clock, which the test cannot
    // move, so the test waits until its start-up load is more than a second old.
    const sinceLoad = Date.now() - nodeBKeysLoadedBy;
    if (sinceLoad < 1100) await new Promise((resolve) => setTimeout(resolve, 1100 - sinceLoad));
    t.notOk((await jwksKids(urlB)).includes(newKid), 'node B does not list the new key yet');
    const products = await fetch(`${urlB}/api/v1/products/`, { headers: { authorization: `Bearer ${after.body.access_token}` } });
    t.equal(products.status, 200, 'node B accepts a token signed with a key it had not loaded');
    await products.arrayBuffer();
    t.ok((await jwksKids(urlB)).includes(newKid), 'node B lists the new key after its reload');

    await nodeB.app.speedgate.keys.reload();
    t.strictSame(await jwksKids(urlA), [oldKid, newKid].sort(), 'node A serves the old and the new key');
    t.strictSame(await jwksKids(urlB), [oldKid, newKid].sort(), 'node B serves the old and the new key');

    const introspect = (url: string, token: string) =>
      postForm(`${url}/o/introspect/`, { token }, { authorization: basicAuthorization(service.client.id, service.clientSecret ?? '') });
    const oldToken = await introspect(urlB, before.body.access_token);
    t.equal(oldToken.body.active, true, 'a token signed with the old key stays valid');
    const onB = await introspect(urlB, after.body.access_token);
    t.equal(onB.body.active, true, 'node B verifies the token node A signed with the new key');
  });
}
