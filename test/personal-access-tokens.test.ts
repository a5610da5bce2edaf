import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { createUser } from '../src/accounts/users.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { ScopeRegistry } from '../src/oauth/scopes.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer } from './helpers/server.ts';

const PASSWORD = 'correct horse battery';
const CURL = 'curl/8.5.0';
const TOKEN_SHAPE = /^spd_[0-9A-Za-z]{36}$/;
const INVALID_PAT = 'The personal access token is invalid, expired or revoked';
const CSRF_MESSAGE = 'The form has expired or was not sent from this site. Reload the page and try again.';
const NOT_FOUND_MESSAGE = 'No active token with this id among your tokens';
const DAY = 86_400;

type Json = Record<string, unknown>;

// One server for the whole file, because starting one (database and migrations) takes seconds.
// Each test signs in as its own user, and the test clock only moves forward.
const server = await startServer(t);
// Stopping the recorder's 10-second timer leaves only the flushes a test calls, so no write
// lands between a test's steps. The recorder still buffers uses, and flush() still writes them.
await server.app.speedgate.lastUsed.close();
let userCount = 0;

/** Builds the create form fields for a token named `name` with read:profile for 30 days. */
function tokenForm(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return { name, 'scope:read:profile': 'on', expires: '30', ...extra };
}

/** Returns the token shown in the page's readonly field, or undefined when the page shows none. */
function readNewToken(html: string): string | undefined {
  return /id="new-token-value"[^>]*value="([^"]*)"/.exec(html)?.[1];
}

function readTokenIds(html: string): string[] {
  return [...html.matchAll(/href="\/accounts\/tokens\/([0-9a-f-]{36})\/revoke\/"/g)].map((match) => match[1]);
}

function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Returns the 31st of the next 30-day month, a day that does not exist, within 366 days of `now`. */
function nextMissing31st(now: Date): string {
  for (let offset = 1; ; offset++) {
    const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
    if ([3, 5, 8, 10].includes(month.getUTCMonth())) {
      return `${month.getUTCFullYear()}-${String(month.getUTCMonth() + 1).padStart(2, '0')}-31`;
    }
  }
}

/** Replaces the character at `index` with another base62 character, keeping the token's shape. */
function changeCharacter(token: string, index: number): string {
  const replacement = token[index] === 'A' ? 'B' : 'A';
  return token.slice(0, index) + replacement + token.slice(index + 1);
}

interface SignedIn {
  session: BrowserSession;
  userId: string;
  email: string;
}

/** Creates a user with a unique email address and returns a browser session signed in as that user. */
async function signIn(t: Test, name: string, isAdmin = false): Promise<SignedIn> {
  userCount += 1;
  const email = `${name}-${userCount}@example.com`;
  const user = await createUser(server.app.speedgate.db, { email, password: PASSWORD, isAdmin }, server.clock.now());
  const session = new BrowserSession(server.url);
  const response = await session.logIn(email, PASSWORD);
  t.equal(response.status, 303, `${email} signs in`);
  return { session, userId: user.id, email };
}

function selectUserTokens(userId: string) {
  return server.app.speedgate.db.selectFrom('personal_access_tokens').selectAll().where('user_id', '=', userId).execute();
}

/** Submits the create form as a browser would and returns the page and the token it shows. */
async function createToken(session: BrowserSession, fields: Record<string, string>) {
  const response = await session.submit('/accounts/tokens/', fields);
  const html = await response.text();
  return { status: response.status, headers: response.headers, html, token: readNewToken(html) };
}

/** Creates a token that the test needs to exist, failing the test when the page rejects the form. */
async function createWorkingToken(t: Test, session: BrowserSession, fields: Record<string, string>): Promise<string> {
  const created = await createToken(session, fields);
  t.equal(created.status, 201, `token "${fields.name}" is created`);
  if (created.token === undefined) throw new Error(`The page did not show the token "${fields.name}"`);
  return created.token;
}

async function findTokenId(session: BrowserSession, name: string): Promise<string> {
  const { html } = await session.page('/accounts/tokens/');
  const card = html.split('<li class="card').find((part) => part.includes(`<h3>${name} `));
  const id = card === undefined ? undefined : readTokenIds(card)[0];
  if (id === undefined) throw new Error(`The token "${name}" has no revoke link on the page`);
  return id;
}

/** Calls the API with `token` as curl would: no cookies, one bearer header. */
async function callApi(token: string, path = '/api/v1/me/', userAgent = CURL) {
  const response = await fetch(`${server.url}${path}`, {
    headers: { authorization: `Bearer ${token}`, 'user-agent': userAgent },
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Json };
}

function resourceMetadata(): string {
  return `${server.url}/.well-known/oauth-protected-resource/api/v1`;
}

function invalidTokenChallenge(description = INVALID_PAT): string {
  return `Bearer realm="speedgate", error="invalid_token", error_description="${description}", resource_metadata="${resourceMetadata()}"`;
}

async function assertRejected(t: Test, token: string, label: string, description = INVALID_PAT): Promise<void> {
  const response = await callApi(token);
  t.equal(response.status, 401, `${label}: status`);
  t.same(response.body, { error: 'invalid_token', error_description: description }, `${label}: body`);
  t.equal(response.headers.get('www-authenticate'), invalidTokenChallenge(description), `${label}: challenge`);
}

async function postLeakReport(body: string, contentType: string) {
  const response = await fetch(`${server.url}/o/leaked_tokens/`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body,
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as unknown };
}

function reportJson(report: unknown) {
  return postLeakReport(JSON.stringify(report), 'application/json');
}

function reportForm(fields: Record<string, string>) {
  return postLeakReport(new URLSearchParams(fields).toString(), 'application/x-www-form-urlencoded');
}

async function introspect(clientId: string, clientSecret: string, token: string) {
  const credentials = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
  const response = await fetch(`${server.url}/o/introspect/`, {
    method: 'POST',
    headers: { authorization: `Basic ${credentials}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
  return { status: response.status, body: (await response.json()) as Json };
}

async function registerResourceServer() {
  const registration = {
    name: 'Resource server',
    grantTypes: ['client_credentials'],
    confidential: true,
    registrationType: 'operator' as const,
  };
  const { client, clientSecret } = await registerClient(server.app.speedgate.db, new ScopeRegistry(), registration, server.clock.now());
  if (clientSecret === undefined) throw new Error('A confidential client must get a secret');
  return { clientId: client.id, clientSecret };
}

function selectTokenRow(id: string) {
  return server.app.speedgate.db.selectFrom('personal_access_tokens').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

t.test('creation page shows token once', async (t) => {
  const { session } = await signIn(t, 'ada');

  const created = await createToken(session, tokenForm('CI deploy'));
  t.equal(created.status, 201);
  t.equal(created.headers.get('cache-control'), 'no-store');
  t.match(created.token, TOKEN_SHAPE);
  t.match(created.html, /It will not be shown again/);
  t.match(created.html, /Your new token “CI deploy”/);

  const reloaded = await session.page('/accounts/tokens/');
  t.equal(reloaded.status, 200);
  t.equal(readNewToken(reloaded.html), undefined, 'the reloaded page has no token field');
  t.notOk(reloaded.html.includes(created.token ?? 'missing'), 'the reloaded page never contains the token');
  t.ok(reloaded.html.includes(`${created.token?.slice(0, 10)}…`), 'the list shows the display prefix');
  t.match(reloaded.html, /<dt>Status<\/dt><dd>active<\/dd>/);
  t.match(reloaded.html, /<dt>Scopes<\/dt><dd>read:profile<\/dd>/);
});

t.test('token page requires signing in', async (t) => {
  const anonymous = new BrowserSession(server.url);

  const response = await anonymous.get('/accounts/tokens/');
  t.equal(response.status, 303);
  t.equal(response.headers.get('location'), '/accounts/login/?next=%2Faccounts%2Ftokens%2F');
});

t.test('token calls API like curl', async (t) => {
  const { session, email } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Profile reader'));

  const me = await callApi(token);
  t.equal(me.status, 200);
  t.equal(me.body.email, email);

  const teams = await callApi(token, '/api/v1/teams/');
  t.equal(teams.status, 403);
  t.same(teams.body, {
    error: 'insufficient_scope',
    error_description: 'This request requires the scope read:teams',
    scope: 'read:teams',
  });
  t.equal(
    teams.headers.get('www-authenticate'),
    `Bearer realm="speedgate", error="insufficient_scope", error_description="This request requires the scope read:teams", scope="read:teams", resource_metadata="${resourceMetadata()}"`,
  );
});

t.test('token with several scopes passes each', async (t) => {
  const { session } = await signIn(t, 'ada');
  const fields = tokenForm('Wide', { 'scope:read:teams': 'on', 'scope:read:products': 'on' });
  const token = await createWorkingToken(t, session, fields);

  for (const path of ['/api/v1/me/', '/api/v1/teams/', '/api/v1/products/']) {
    const response = await callApi(token, path);
    t.equal(response.status, 200, path);
  }
});

t.test('database stores only hash and prefix', async (t) => {
  const { session, userId } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Stored'));

  const rows = await selectUserTokens(userId);
  t.equal(rows.length, 1);
  const row = rows[0];
  t.equal(row.token_hash, sha256Hex(token));
  t.equal(row.display_prefix, token.slice(0, 10));
  t.equal(row.name, 'Stored');
  t.equal(row.scope, 'read:profile');
  for (const [column, value] of Object.entries(row)) {
    t.notOk(String(value).includes(token.slice(4)), `column ${column} does not contain the token`);
  }
});

t.test('malformed tokens get invalid_token', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Real'));

  const cases: [string, string][] = [
    ['prefix only', 'spd_'],
    ['not base62', 'spd_abc.def'],
    ['truncated', token.slice(0, -1)],
    ['one character too many', `${token}A`],
    ['body character changed', changeCharacter(token, 10)],
    ['checksum character changed', changeCharacter(token, token.length - 1)],
  ];
  for (const [label, value] of cases) await assertRejected(t, value, label);

  // Without the lower-case spd_ prefix, the value is checked as a JWT access token instead.
  const upperCase = `SPD_${token.slice(4)}`;
  await assertRejected(t, upperCase, 'upper-case prefix', 'The access token is invalid or expired');

  const unchanged = await callApi(token);
  t.equal(unchanged.status, 200, 'the real token still works');
});

t.test('well-formed unknown token is rejected', async (t) => {
  const { session, userId } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Deleted'));

  await server.app.speedgate.db.deleteFrom('personal_access_tokens').where('user_id', '=', userId).execute();
  await assertRejected(t, token, 'deleted token');
});

t.test('non-admin cannot grant admin scope', async (t) => {
  const { session, userId } = await signIn(t, 'ada');

  const page = await session.page('/accounts/tokens/');
  t.notOk(page.html.includes('name="scope:admin"'), 'the admin checkbox is not offered');

  const created = await createToken(session, tokenForm('Sneaky', { 'scope:admin': 'on' }));
  t.equal(created.status, 400);
  t.match(created.html, /<p class="error" role="alert" id="form-error">You may not grant the scope admin<\/p>/);
  t.equal(created.token, undefined);

  t.same(await selectUserTokens(userId), [], 'no row is left behind');
});

t.test('admin can grant admin scope', async (t) => {
  const { session, userId } = await signIn(t, 'root', true);

  const page = await session.page('/accounts/tokens/');
  t.ok(page.html.includes('name="scope:admin"'), 'the admin checkbox is offered');

  const created = await createToken(session, tokenForm('Operator', { 'scope:admin': 'on' }));
  t.equal(created.status, 201);
  const rows = await selectUserTokens(userId);
  t.same(rows.map((row) => row.scope), ['read:profile admin']);
});

t.test('create form rejects invalid input', async (t) => {
  const { session, userId } = await signIn(t, 'ada');
  const yesterday = new Date(server.clock.now().getTime() - DAY * 1000).toISOString().slice(0, 10);
  const tooFar = new Date(server.clock.now().getTime() + 400 * DAY * 1000).toISOString().slice(0, 10);
  const missingDay = nextMissing31st(server.clock.now());

  const cases: [string, Record<string, string>, string][] = [
    ['empty name', tokenForm(''), 'The token name must be 1 to 100 characters'],
    ['blank name', tokenForm('   '), 'The token name must be 1 to 100 characters'],
    ['long name', tokenForm('x'.repeat(101)), 'The token name must be 1 to 100 characters'],
    ['no scope', { name: 'No scope', expires: '30' }, 'Choose at least one scope'],
    ['unknown scope', { name: 'Unknown', 'scope:delete:everything': 'on' }, 'You may not grant the scope delete:everything'],
    ['past custom date', tokenForm('Past', { expires: 'custom', expires_on: yesterday }), 'The expiry date must be in the future'],
    ['custom date too far', tokenForm('Far', { expires: 'custom', expires_on: tooFar }), 'The expiry date must be within 366 days'],
    ['custom without date', tokenForm('Blank date', { expires: 'custom' }), 'Enter the custom expiry date as YYYY-MM-DD'],
    ['custom date not ISO', tokenForm('US date', { expires: 'custom', expires_on: '12/31/2030' }), 'Enter the custom expiry date as YYYY-MM-DD'],
    ['month 13', tokenForm('Month 13', { expires: 'custom', expires_on: '2027-13-01' }), 'The custom expiry date 2027-13-01 does not exist'],
    ['31st of a 30-day month', tokenForm('Rolled over', { expires: 'custom', expires_on: missingDay }), `The custom expiry date ${missingDay} does not exist`],
    ['unknown preset', tokenForm('Odd preset', { expires: '45' }), 'Choose one of the expiry options'],
  ];
  for (const [label, fields, message] of cases) {
    const created = await createToken(session, fields);
    t.equal(created.status, 400, `${label}: status`);
    t.ok(created.html.includes(`<p class="error" role="alert" id="form-error">${message}</p>`), `${label}: message`);
    t.equal(created.token, undefined, `${label}: no token shown`);
  }

  const keptFields = { name: 'Keeps input', 'scope:read:teams': 'on', expires: 'custom', expires_on: yesterday };
  const kept = await createToken(session, keptFields);
  t.equal(kept.status, 400);
  t.match(kept.html, /value="Keeps input"/, 'the form keeps the name');
  t.match(kept.html, /name="scope:read:teams" value="on" checked>/, 'the form keeps the chosen scope');
  t.notMatch(kept.html, /name="scope:read:profile" value="on" checked>/, 'the form checks no other scope');
  t.match(kept.html, /<option value="custom" selected>/, 'the form keeps the expiry choice');
  t.ok(kept.html.includes(`name="expires_on" type="date" value="${yesterday}"`), 'the form keeps the date');

  t.same(await selectUserTokens(userId), [], 'no rejected form left a row');
});

t.test('hostile token name is escaped', async (t) => {
  const { session } = await signIn(t, 'ada');

  const created = await createToken(session, tokenForm('<img src=x onerror=alert(1)>'));
  t.equal(created.status, 201);
  t.notOk(created.html.includes('<img src=x'), 'the new-token heading escapes the name');
  const { html } = await session.page('/accounts/tokens/');
  t.notOk(html.includes('<img src=x'), 'the list escapes the name');
  t.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'), 'the list shows the name as text');
});

t.test('revoked token gets 401', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Short-lived', { expires: '7' }));
  t.equal((await callApi(token)).status, 200, 'the token works before revocation');

  const id = await findTokenId(session, 'Short-lived');
  const confirm = await session.page(`/accounts/tokens/${id}/revoke/`);
  t.equal(confirm.status, 200);
  t.match(confirm.html, /<h1>Revoke “Short-lived”\?<\/h1>/);
  t.ok(confirm.html.includes(`<code>${token.slice(0, 10)}…</code>`), 'the confirm page names the prefix');

  const revoked = await session.post(`/accounts/tokens/${id}/revoke/`, { csrf_token: confirm.csrfToken });
  t.equal(revoked.status, 303);
  t.equal(revoked.headers.get('location'), '/accounts/tokens/');

  await assertRejected(t, token, 'revoked token');

  // A minute on, the 7-day token would be flagged as expiring soon if it were still active.
  server.clock.advance(60);
  const { html } = await session.page('/accounts/tokens/');
  t.match(html, /<dt>Status<\/dt><dd>revoked at \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC<\/dd>/);
  t.same(readTokenIds(html), [], 'a revoked token has no revoke link');
  t.notOk(html.includes('expires soon'), 'a revoked token is not flagged as expiring');

  const again = await session.page(`/accounts/tokens/${id}/revoke/`);
  t.equal(again.status, 404, 'the confirm page of a revoked token is not found');
  t.ok(again.html.includes(NOT_FOUND_MESSAGE));

  const twice = await session.post(`/accounts/tokens/${id}/revoke/`, { csrf_token: confirm.csrfToken });
  t.equal(twice.status, 404, 'revoking twice is not found');
});

t.test('expired preset token gets 401', async (t) => {
  const { session, userId } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Weekly', { expires: '7' }));
  const [row] = await selectUserTokens(userId);
  t.ok(row.expires_at !== null, 'the token has an expiry');
  const lifetime = (row.expires_at?.getTime() ?? 0) - row.created_at.getTime();
  t.equal(lifetime, 7 * DAY * 1000, 'the 7-day preset expires 7 days after creation');

  server.clock.advance(7 * DAY - 60);
  t.equal((await callApi(token)).status, 200, 'the token works a minute before expiry');

  server.clock.advance(DAY + 60);
  await assertRejected(t, token, 'token a day past expiry');

  const { html } = await session.page('/accounts/tokens/');
  t.match(html, /<dt>Status<\/dt><dd>expired<\/dd>/);
});

t.test('expired custom-date token gets 401', async (t) => {
  const { session, userId } = await signIn(t, 'ada');
  const tomorrow = new Date(server.clock.now().getTime() + DAY * 1000).toISOString().slice(0, 10);
  const token = await createWorkingToken(t, session, tokenForm('Tomorrow', { expires: 'custom', expires_on: tomorrow }));

  const [row] = await selectUserTokens(userId);
  t.equal(row.expires_at?.toISOString(), `${tomorrow}T23:59:59.000Z`, 'the token expires at the end of the day in UTC');
  t.equal((await callApi(token)).status, 200);

  server.clock.advance(2 * DAY);
  await assertRejected(t, token, 'token past its custom date');
});

t.test('token without expiry keeps working', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Forever', { expires: 'none' }));

  server.clock.advance(400 * DAY);
  t.equal((await callApi(token)).status, 200);
});

t.test('tokens near expiry are flagged', async (t) => {
  const { session } = await signIn(t, 'ada');
  const inFiveDays = new Date(server.clock.now().getTime() + 5 * DAY * 1000).toISOString().slice(0, 10);
  await createWorkingToken(t, session, tokenForm('Soon', { expires: 'custom', expires_on: inFiveDays }));
  await createWorkingToken(t, session, tokenForm('Monthly', { expires: '30' }));
  await createWorkingToken(t, session, tokenForm('Weekly', { expires: '7' }));
  await createWorkingToken(t, session, tokenForm('Forever', { expires: 'none' }));

  server.clock.advance(3600);
  const { html } = await session.page('/accounts/tokens/');
  const flagged = (name: string) => {
    const card = html.split('<li class="card').find((part) => part.includes(`<h3>${name} `)) ?? '';
    return card.includes('<span class="badge warn">expires soon</span>');
  };
  t.ok(flagged('Soon'), 'a token expiring in five days is flagged');
  t.ok(flagged('Weekly'), 'a 7-day token is flagged once time passes');
  t.notOk(flagged('Monthly'), 'a 30-day token is not flagged');
  t.notOk(flagged('Forever'), 'a token without expiry is not flagged');
  t.match(html, /<dt>Expires<\/dt><dd>never<\/dd>/);

  server.clock.advance(8 * DAY);
  const later = await session.page('/accounts/tokens/');
  const weekly = later.html.split('<li class="card').find((part) => part.includes('<h3>Weekly ')) ?? '';
  t.notOk(weekly.includes('expires soon'), 'an expired token is no longer flagged');
  t.match(weekly, /<dt>Status<\/dt><dd>expired<\/dd>/);
});

t.test('last used appears after flush', async (t) => {
  const { session } = await signIn(t, 'ada');
  await createWorkingToken(t, session, tokenForm('Tracked'));
  const token = await createWorkingToken(t, session, tokenForm('Used'));
  const id = await findTokenId(session, 'Used');

  const before = await session.page('/accounts/tokens/');
  t.match(before.html, /<dt>Last used<\/dt><dd>never<\/dd>/);

  server.clock.advance(DAY);
  const usedAt = server.clock.now();
  t.equal((await callApi(token, '/api/v1/me/', 'deploy-script/1.0')).status, 200);

  const unflushed = await selectTokenRow(id);
  t.equal(unflushed.last_used_at, null, 'using a token writes nothing before the flush');

  await server.app.speedgate.lastUsed.flush();
  const row = await selectTokenRow(id);
  t.equal(row.last_used_ip, '127.0.0.1');
  t.equal(row.last_used_user_agent, 'deploy-script/1.0');
  const recordedAt = row.last_used_at?.getTime() ?? 0;
  t.ok(recordedAt >= usedAt.getTime() && recordedAt < usedAt.getTime() + 60_000, 'the time is the test clock time of use');

  const shownTime = `${row.last_used_at?.toISOString().replace('T', ' ').slice(0, 16)} UTC`;
  const { html } = await session.page('/accounts/tokens/');
  t.ok(html.includes(`<dt>Last used</dt><dd>${shownTime} from 127.0.0.1 deploy-script/1.0</dd>`), 'the page shows time, address and user agent');
  t.equal((html.match(/<dt>Last used<\/dt><dd>never<\/dd>/g) ?? []).length, 1, 'the unused token still shows never');
});

t.test('many uses cause one write', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Busy'));
  const id = await findTokenId(session, 'Busy');
  const { db, lastUsed } = server.app.speedgate;
  await lastUsed.flush();

  // The recorder writes through this same Kysely instance, so counting its updates counts the writes.
  const updates: string[] = [];
  const originalUpdateTable = db.updateTable;
  const countingUpdateTable = function (this: typeof db, table: string) {
    updates.push(table);
    return Reflect.apply(originalUpdateTable, this, [table]);
  };
  Object.assign(db, { updateTable: countingUpdateTable });
  t.teardown(() => {
    Reflect.deleteProperty(db, 'updateTable');
  });

  for (let i = 1; i <= 25; i++) {
    const response = await callApi(token, '/api/v1/me/', `script/${i}`);
    t.equal(response.status, 200, `call ${i}`);
  }
  t.same(updates, [], 'API calls write nothing themselves');

  await lastUsed.flush();
  t.same(updates, ['personal_access_tokens'], 'the flush writes once for 25 uses');
  const row = await selectTokenRow(id);
  t.equal(row.last_used_user_agent, 'script/25', 'the write keeps the latest use');

  await lastUsed.flush();
  t.same(updates, ['personal_access_tokens'], 'a flush with nothing buffered writes nothing');
});

t.test('missing CSRF token is rejected', async (t) => {
  const { session, userId } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Protected'));
  const id = await findTokenId(session, 'Protected');

  const create = await session.post('/accounts/tokens/', tokenForm('Forged'));
  t.equal(create.status, 403, 'create without a CSRF token');
  t.ok((await create.text()).includes(CSRF_MESSAGE));

  const wrong = await session.post('/accounts/tokens/', { ...tokenForm('Forged'), csrf_token: 'not-a-token' });
  t.equal(wrong.status, 403, 'create with a wrong CSRF token');
  t.ok((await wrong.text()).includes(CSRF_MESSAGE));

  const revoke = await session.post(`/accounts/tokens/${id}/revoke/`, {});
  t.equal(revoke.status, 403, 'revoke without a CSRF token');
  t.ok((await revoke.text()).includes(CSRF_MESSAGE));

  const rows = await selectUserTokens(userId);
  t.same(rows.map((row) => [row.name, row.revoked_at]), [['Protected', null]], 'no token was created or revoked');
  t.equal((await callApi(token)).status, 200, 'the token still works');
});

t.test('users see only their tokens', async (t) => {
  const { session: ada } = await signIn(t, 'ada');
  const { session: bob } = await signIn(t, 'bob');
  const token = await createWorkingToken(t, ada, tokenForm('Ada secret job'));
  const id = await findTokenId(ada, 'Ada secret job');

  const bobPage = await bob.page('/accounts/tokens/');
  t.equal(bobPage.status, 200);
  t.notOk(bobPage.html.includes('Ada secret job'), 'the name is not listed for another user');
  t.notOk(bobPage.html.includes(token.slice(0, 10)), 'the prefix is not listed for another user');
  t.notOk(bobPage.html.includes(id), 'the id is not listed for another user');
  t.match(bobPage.html, /You have no tokens yet/);

  const confirm = await bob.page(`/accounts/tokens/${id}/revoke/`);
  t.equal(confirm.status, 404, 'another user cannot open the confirm page');
  t.ok(confirm.html.includes(NOT_FOUND_MESSAGE));
  t.notOk(confirm.html.includes('Ada secret job'), 'the 404 page does not name the token');

  const revoke = await bob.post(`/accounts/tokens/${id}/revoke/`, { csrf_token: bobPage.csrfToken });
  t.equal(revoke.status, 404, 'another user cannot revoke the token');
  t.ok((await revoke.text()).includes(NOT_FOUND_MESSAGE));

  t.equal((await callApi(token)).status, 200, "Ada's token still works");
  const row = await selectTokenRow(id);
  t.equal(row.revoked_at, null);
});

t.test('revoke rejects malformed ids', async (t) => {
  const { session } = await signIn(t, 'ada');
  const { csrfToken } = await session.page('/accounts/tokens/');

  for (const id of ['not-a-uuid', '00000000-0000-0000-0000-000000000000', "x'%20or%201=1--"]) {
    const confirm = await session.page(`/accounts/tokens/${id}/revoke/`);
    t.equal(confirm.status, 404, `confirm page for ${id}`);
    const revoke = await session.post(`/accounts/tokens/${id}/revoke/`, { csrf_token: csrfToken });
    t.equal(revoke.status, 404, `revoke for ${id}`);
    t.ok((await revoke.text()).includes(NOT_FOUND_MESSAGE));
  }
});

t.test('leak report revokes at once', async (t) => {
  const { session } = await signIn(t, 'ada');
  const formToken = await createWorkingToken(t, session, tokenForm('Form leak'));
  const objectToken = await createWorkingToken(t, session, tokenForm('Object leak'));
  const arrayTokens = [
    await createWorkingToken(t, session, tokenForm('Array leak one')),
    await createWorkingToken(t, session, tokenForm('Array leak two')),
  ];
  const untouched = await createWorkingToken(t, session, tokenForm('Untouched'));

  const form = await reportForm({ token: formToken, url: 'https://paste.example/abc' });
  t.equal(form.status, 202, 'form report');
  t.same(form.body, { received: 1 });
  t.equal(form.headers.get('cache-control'), 'no-store');
  await assertRejected(t, formToken, 'token reported by form');

  const object = await reportJson({ token: objectToken, url: 'https://github.com/acme/app/blob/main/.env' });
  t.equal(object.status, 202, 'JSON object report');
  t.same(object.body, { received: 1 });
  await assertRejected(t, objectToken, 'token reported as JSON object');

  const array = await reportJson([
    { token: arrayTokens[0], url: 'https://gist.example/1' },
    { token: arrayTokens[1], source: 'https://gist.example/2' },
  ]);
  t.equal(array.status, 202, 'JSON array report');
  t.same(array.body, { received: 2 });
  await assertRejected(t, arrayTokens[0], 'first token reported in an array');
  await assertRejected(t, arrayTokens[1], 'second token reported in an array');

  t.equal((await callApi(untouched)).status, 200, 'an unreported token still works');

  const { html } = await session.page('/accounts/tokens/');
  t.match(html, /revoked: reported as leaked at [^<]*, found at https:\/\/paste\.example\/abc<\/dd>/);
  t.match(html, /revoked: reported as leaked at [^<]*, found at https:\/\/github\.com\/acme\/app\/blob\/main\/\.env<\/dd>/);
  t.match(html, /found at https:\/\/gist\.example\/2<\/dd>/, 'the source field is accepted as the URL');
});

t.test('leak report without URL revokes', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('No source'));

  const report = await reportForm({ token });
  t.equal(report.status, 202);
  await assertRejected(t, token, 'token reported without a URL');

  const { html } = await session.page('/accounts/tokens/');
  t.match(html, /<dt>Status<\/dt><dd>revoked: reported as leaked at \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC<\/dd>/);
});

t.test('leak source URL is escaped', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Hostile source'));

  await reportJson({ token, url: '<script>alert(1)</script>' });
  const { html } = await session.page('/accounts/tokens/');
  t.notOk(html.includes('<script>alert(1)'), 'the source is not markup');
  t.ok(html.includes('found at &lt;script&gt;alert(1)&lt;/script&gt;'), 'the source is shown as text');
});

t.test('leak report reveals nothing', async (t) => {
  const { session } = await signIn(t, 'ada');
  const live = await createWorkingToken(t, session, tokenForm('Live'));
  const revoked = await createWorkingToken(t, session, tokenForm('Already revoked'));
  t.equal((await reportForm({ token: revoked })).status, 202, 'the first report of a token');

  const unknown = changeCharacter(live, 10);
  const reports: [string, string][] = [
    ['live token', live],
    ['already revoked token', revoked],
    ['unknown token', unknown],
    ['malformed token', 'spd_nope'],
    ['not a token at all', 'hello'],
    ['empty string', ''],
  ];
  for (const [label, token] of reports) {
    const json = await reportJson({ token, url: 'https://paste.example/x' });
    t.equal(json.status, 202, `${label} as JSON: status`);
    t.same(json.body, { received: 1 }, `${label} as JSON: body`);
  }

  // Forms drop empty values, so the form cases leave out the empty string.
  for (const [label, token] of reports.filter(([, token]) => token !== '')) {
    const form = await reportForm({ token });
    t.equal(form.status, 202, `${label} as form: status`);
    t.same(form.body, { received: 1 }, `${label} as form: body`);
  }
});

t.test('leak report rejects bad bodies', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Survivor'));
  const tokenError = (index: number) => ({
    error: 'invalid_request',
    error_description: `Entry ${index}: token must be a string of at most 200 characters`,
  });
  const countError = { error: 'invalid_request', error_description: 'Report between 1 and 100 tokens at once' };

  const cases: [string, unknown, Json][] = [
    ['number token', { token: 12345 }, tokenError(0)],
    ['array token', { token: [token] }, tokenError(0)],
    ['object token', { token: { value: token } }, tokenError(0)],
    ['missing token', { url: 'https://paste.example/x' }, tokenError(0)],
    ['over-long token', { token: 'x'.repeat(201) }, tokenError(0)],
    ['null body', null, tokenError(0)],
    ['string body', 'spd_abc', tokenError(0)],
    ['number body', 42, tokenError(0)],
    ['empty array', [], countError],
    ['101 entries', Array.from({ length: 101 }, () => ({ token: 'spd_x' })), countError],
    ['null entry', [{ token: 'spd_x' }, null], tokenError(1)],
    ['number entry', [7], tokenError(0)],
    ['nested array', [[{ token }]], tokenError(0)],
  ];
  for (const [label, body, expected] of cases) {
    const response = await reportJson(body);
    t.equal(response.status, 400, `${label}: status`);
    t.same(response.body, expected, `${label}: body`);
  }

  const hundred = await reportJson(Array.from({ length: 100 }, () => ({ token: 'spd_x' })));
  t.equal(hundred.status, 202, '100 entries are accepted');

  const repeated = await postLeakReport(`token=${token}&token=${token}`, 'application/x-www-form-urlencoded');
  t.equal(repeated.status, 400, 'a repeated form field');
  t.same(repeated.body, tokenError(0));

  const broken = await postLeakReport('{"token": ', 'application/json');
  t.equal(broken.status, 400, 'invalid JSON');
  t.same(broken.body, { error: 'invalid_request', error_description: 'The request body could not be parsed' });

  const empty = await postLeakReport('', 'application/json');
  t.equal(empty.status, 400, 'an empty JSON body');
  t.same(empty.body, { error: 'invalid_request', error_description: 'The request body could not be parsed' });

  t.equal((await callApi(token)).status, 200, 'no bad report revoked the token');
});

t.test('leak reports are rate limited', async (t) => {
  // Earlier tests reported from this address too: start a fresh one-minute window.
  server.clock.advance(61);


  for (let i = 1; i <= 60; i++) {
    const response = await reportJson({ token: 'spd_x' });
    if (response.status !== 202) t.fail(`report ${i} got ${response.status}`);
  }

  const limited = await reportJson({ token: 'spd_x' });
  t.equal(limited.status, 429);
  t.same(limited.body, { error: 'invalid_request', error_description: 'Too many reports from this address; retry later' });
  const retryAfter = Number(limited.headers.get('retry-after'));
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter} is within the minute`);

  const badBody = await reportJson([]);
  t.equal(badBody.status, 429, 'a limited address is rejected before its body is read');

  server.clock.advance(61);
  const later = await reportJson({ token: 'spd_x' });
  t.equal(later.status, 202, 'reports are accepted again after the window');
  server.clock.advance(61);
});

t.test('introspection describes active token', async (t) => {
  const { session, userId } = await signIn(t, 'ada');
  const { clientId, clientSecret } = await registerResourceServer();
  const token = await createWorkingToken(t, session, tokenForm('Inspected', { 'scope:read:teams': 'on' }));
  const [row] = await selectUserTokens(userId);
  const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

  const response = await introspect(clientId, clientSecret, token);
  t.equal(response.status, 200);
  t.same(response.body, {
    active: true,
    token_type: 'Bearer',
    token_kind: 'personal_access_token',
    scope: 'read:profile read:teams',
    sub: row.user_id,
    iss: server.url,
    iat: seconds(row.created_at),
    exp: seconds(row.expires_at ?? new Date(0)),
  });
  t.notOk('client_id' in response.body, 'a personal access token names no client');
});

t.test('introspection omits exp without expiry', async (t) => {
  const { session } = await signIn(t, 'ada');
  const { clientId, clientSecret } = await registerResourceServer();
  const token = await createWorkingToken(t, session, tokenForm('Forever', { expires: 'none' }));

  const response = await introspect(clientId, clientSecret, token);
  t.equal(response.status, 200);
  t.equal(response.body.active, true);
  t.notOk('exp' in response.body, 'a token without expiry has no exp');
});

t.test('introspection reports inactive tokens', async (t) => {
  const { session } = await signIn(t, 'ada');
  const { clientId, clientSecret } = await registerResourceServer();
  const revoked = await createWorkingToken(t, session, tokenForm('Revoked'));
  const leaked = await createWorkingToken(t, session, tokenForm('Leaked'));
  const expiring = await createWorkingToken(t, session, tokenForm('Expiring', { expires: '7' }));

  const confirm = await session.page(`/accounts/tokens/${await findTokenId(session, 'Revoked')}/revoke/`);
  const revokeForm = /action="([^"]+)"/.exec(confirm.html)?.[1] ?? '';
  t.equal((await session.post(revokeForm, { csrf_token: confirm.csrfToken })).status, 303);
  t.equal((await reportForm({ token: leaked })).status, 202);
  server.clock.advance(8 * DAY);

  const cases: [string, string][] = [
    ['revoked', revoked],
    ['reported as leaked', leaked],
    ['expired', expiring],
    ['wrong checksum', changeCharacter(expiring, expiring.length - 1)],
    ['malformed', 'spd_short'],
  ];
  for (const [label, token] of cases) {
    const response = await introspect(clientId, clientSecret, token);
    t.equal(response.status, 200, `${label}: status`);
    t.same(response.body, { active: false }, `${label}: body`);
  }
});

t.test('introspection requires confidential client', async (t) => {
  const { session } = await signIn(t, 'ada');
  const token = await createWorkingToken(t, session, tokenForm('Guarded'));
  const registration = { name: 'Public CLI', registrationType: 'operator' as const };
  const { client } = await registerClient(server.app.speedgate.db, new ScopeRegistry(), registration, server.clock.now());

  const response = await fetch(`${server.url}/o/introspect/`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, client_id: client.id }).toString(),
  });
  t.equal(response.status, 401);
  t.same(await response.json(), { error: 'invalid_client', error_description: 'Introspection requires a confidential client' });

  const wrongSecret = await introspect((await registerResourceServer()).clientId, 'sgs_wrong', token);
  t.equal(wrongSecret.status, 401);
  t.same(wrongSecret.body, { error: 'invalid_client', error_description: 'Client authentication failed' });
});
