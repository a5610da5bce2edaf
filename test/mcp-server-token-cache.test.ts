import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { ExchangeError, TokenExchanger } from '../examples/mcp-server/src/token-exchange.ts';

// A stand-in for Speedgate's token endpoint, so the cache can be tested with a controlled clock.

interface RecordedRequest {
  path: string;
  authorization: string | undefined;
  fields: Record<string, string>;
}

const requests: RecordedRequest[] = [];

async function readForm(req: IncomingMessage): Promise<Record<string, string>> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return Object.fromEntries(new URLSearchParams(text));
}

const tokenEndpoint = createServer(async (req, res) => {
  const fields = await readForm(req);
  requests.push({ path: req.url ?? '', authorization: req.headers.authorization, fields });

  res.setHeader('content-type', 'application/json');
  if (fields.subject_token === 'revoked') {
    res.statusCode = 400;
    res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'The subject_token has been revoked' }));
    return;
  }
  const body = {
    access_token: `api-${fields.subject_token}-${requests.length}`,
    issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    token_type: 'Bearer',
    expires_in: 3600,
  };
  res.end(JSON.stringify(body));
});
tokenEndpoint.listen(0, '127.0.0.1');
await once(tokenEndpoint, 'listening');
t.teardown(() => tokenEndpoint.close());

const speedgateUrl = `http://127.0.0.1:${(tokenEndpoint.address() as AddressInfo).port}`;
const client = { speedgateUrl, clientId: 'mcp:server', clientSecret: 'a secret' };

/** Creates a clock in epoch milliseconds that tests move by hand. */
function manualClock() {
  const clock = { now: 1_000_000, read: () => clock.now };
  return clock;
}

t.beforeEach(() => {
  requests.length = 0;
});

t.test('exchange request fields', async (t) => {
  const exchanger = new TokenExchanger(client);
  t.equal(await exchanger.apiToken('subject'), 'api-subject-1');

  t.equal(requests.length, 1);
  t.equal(requests[0].path, '/o/token/');
  t.same(requests[0].fields, {
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: 'subject',
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    resource: `${speedgateUrl}/api/v1`,
  });
  // RFC 6749 section 2.3.1 form-urlencodes the id and secret before joining them.
  const expected = `Basic ${Buffer.from('mcp%3Aserver:a+secret').toString('base64')}`;
  t.equal(requests[0].authorization, expected);
});

t.test('cache keeps a token until shortly before expiry', async (t) => {
  const clock = manualClock();
  const exchanger = new TokenExchanger(client, { now: clock.read });

  const first = await exchanger.apiToken('subject');
  t.equal(await exchanger.apiToken('subject'), first);
  t.equal(requests.length, 1, 'the second call uses the cache');

  // The cache stops 30 seconds before the token's expires_in of 3600 seconds.
  clock.now += (3600 - 30) * 1000 - 1;
  t.equal(await exchanger.apiToken('subject'), first);
  t.equal(requests.length, 1, 'still cached just before the margin');

  clock.now += 1;
  t.not(await exchanger.apiToken('subject'), first);
  t.equal(requests.length, 2, 'exchanged again at the margin');
});

t.test('concurrent calls share one exchange', async (t) => {
  const exchanger = new TokenExchanger(client);
  const tokens = await Promise.all([1, 2, 3].map(() => exchanger.apiToken('shared')));

  t.equal(new Set(tokens).size, 1, 'every call gets the same token');
  t.equal(requests.length, 1);
});

t.test('failed exchange is not cached', async (t) => {
  const exchanger = new TokenExchanger(client);

  for (const attempt of [1, 2]) {
    const error = await exchanger.apiToken('revoked').then(
      () => undefined,
      (failure: unknown) => failure,
    );
    t.ok(error instanceof ExchangeError, `attempt ${attempt} fails with ExchangeError`);
    t.equal((error as ExchangeError).status, 400);
    t.equal((error as ExchangeError).code, 'invalid_grant');
    t.equal((error as ExchangeError).message, 'The subject_token has been revoked');
  }
  t.equal(requests.length, 2);
  t.equal(exchanger.size, 0);
});

t.test('full cache drops the oldest entry', async (t) => {
  const exchanger = new TokenExchanger(client, { maxEntries: 2 });
  await exchanger.apiToken('a');
  await exchanger.apiToken('b');
  await exchanger.apiToken('c');
  t.equal(exchanger.size, 2);
  t.equal(requests.length, 3);

  await exchanger.apiToken('c');
  t.equal(requests.length, 3, 'the newest entry is still cached');
  await exchanger.apiToken('a');
  t.equal(requests.length, 4, 'the oldest entry was dropped');
});

t.test('full cache drops expired entries first', async (t) => {
  const clock = manualClock();
  const exchanger = new TokenExchanger(client, { now: clock.read, maxEntries: 2 });
  await exchanger.apiToken('a');
  clock.now += 3600 * 1000;
  await exchanger.apiToken('b');
  await exchanger.apiToken('c');
  t.equal(exchanger.size, 2);

  await exchanger.apiToken('b');
  t.equal(requests.length, 3, 'b stayed because the expired a went first');
});

t.test('forget drops the cached token', async (t) => {
  const exchanger = new TokenExchanger(client);
  await exchanger.apiToken('subject');
  exchanger.forget('subject');

  await exchanger.apiToken('subject');
  t.equal(requests.length, 2);
});

t.test('unreachable endpoint is an ExchangeError', async (t) => {
  // Port 9 (discard) on loopback: nothing listens there, so the connection is refused at once.
  const exchanger = new TokenExchanger({ ...client, speedgateUrl: 'http://127.0.0.1:9' });
  const error = await exchanger.apiToken('subject').then(
    () => undefined,
    (failure: unknown) => failure,
  );

  t.ok(error instanceof ExchangeError);
  t.equal((error as ExchangeError).status, 0);
  t.equal((error as ExchangeError).code, 'temporarily_unavailable');
  t.match((error as ExchangeError).message, /^Could not reach http:\/\/127\.0\.0\.1:9\/o\/token\/: /);
});
