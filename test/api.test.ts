import { SignJWT, decodeJwt, importJWK, type JWK, type JWTPayload } from 'jose';
import t from 'tap';
import type { User } from '../src/db/schema.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { callApi, createTestUser, issueTestTokens, type IssuedTokens } from './helpers/tokens.ts';

let server: TestServer;
let metadataUrl: string;

t.before(async () => {
  server = await startServer(t);
  metadataUrl = `${server.url}/.well-known/oauth-protected-resource/api/v1`;
});

const ALL_SCOPES = 'read:profile write:profile read:teams write:teams read:products';

const ROUTES: { method: string; path: string; scope: string; body?: unknown }[] = [
  { method: 'GET', path: '/api/v1/me/', scope: 'read:profile' },
  { method: 'PATCH', path: '/api/v1/me/', scope: 'write:profile', body: { name: 'Ada' } },
  { method: 'GET', path: '/api/v1/teams/', scope: 'read:teams' },
  {
    method: 'POST',
    path: '/api/v1/teams/some-team/invitations/',
    scope: 'write:teams',
    body: { email: 'bob@example.com' },
  },
  { method: 'GET', path: '/api/v1/products/', scope: 'read:products' },
];

const invalidToken = { error: 'invalid_token', error_description: 'The access token is invalid or expired' };

function invalidRequest(description: string) {
  return { error: 'invalid_request', error_description: description };
}

async function teamOf(user: User): Promise<string> {
  const { db } = server.app.speedgate;
  const row = await db
    .selectFrom('team_members')
    .select('team_id')
    .where('user_id', '=', user.id)
    .where('role', '=', 'owner')
    .executeTakeFirstOrThrow();
  return row.team_id;
}

async function addMember(teamId: string, user: User): Promise<void> {
  await server.app.speedgate.db
    .insertInto('team_members')
    .values({ team_id: teamId, user_id: user.id, role: 'member', joined_at: server.clock.now() })
    .execute();
}

/** Signs an access token with the server's current key, starting from the claims of a real one. */
async function resign(issued: IssuedTokens, changes: JWTPayload): Promise<string> {
  const claims = { ...decodeJwt(issued.accessToken), ...changes };
  delete claims.iat;
  delete claims.exp;
  return server.app.speedgate.keys.signAccessToken(claims, server.clock.now(), 3600);
}

t.test('missing token gets a challenge', async (t) => {
  for (const route of ROUTES) {
    const label = `${route.method} ${route.path}`;
    const response = await callApi(server, route.method, route.path, undefined, route.body);

    t.equal(response.status, 401, label);
    t.same(response.body, { error: 'invalid_token', error_description: 'An access token is required' }, label);
    t.equal(
      response.headers.get('www-authenticate'),
      `Bearer realm="speedgate", resource_metadata="${metadataUrl}"`,
      label,
    );
  }
});

t.test('resource metadata URL is served', async (t) => {
  const response = await fetch(metadataUrl);
  t.equal(response.status, 200);
  const metadata = (await response.json()) as { resource: string; authorization_servers: string[] };
  t.equal(metadata.resource, `${server.url}/api/v1`);
  t.same(metadata.authorization_servers, [server.url]);
});

t.test('garbage token is invalid_token', async (t) => {
  for (const token of ['abc', 'abc.def.ghi', 'eyJhbGciOiJub25lIn0.e30.', 'spd_notarealtoken']) {
    const response = await callApi(server, 'GET', '/api/v1/me/', token);
    t.equal(response.status, 401, token);
    t.equal(response.body.error, 'invalid_token', token);
    t.match(response.headers.get('www-authenticate'), /^Bearer realm="speedgate", error="invalid_token"/, token);
    t.match(response.headers.get('www-authenticate'), `resource_metadata="${metadataUrl}"`, token);
  }

  const jwt = await callApi(server, 'GET', '/api/v1/me/', 'abc.def.ghi');
  t.same(jwt.body, invalidToken);
});

t.test('malformed Authorization header is invalid_request', async (t) => {
  for (const header of ['Basic YTpi', 'Bearer', 'Bearer a b', 'Bearer\ttoken', 'Token abc']) {
    const response = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: header } });
    t.equal(response.status, 400, header);
    t.same(await response.json(), invalidRequest('The Authorization header must be "Bearer <token>"'), header);
    t.match(response.headers.get('www-authenticate'), /error="invalid_request"/, header);
  }
});

t.test('token without the scope is 403', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });

  for (const route of ROUTES.filter((entry) => entry.scope !== 'read:profile')) {
    const label = `${route.method} ${route.path}`;
    const response = await callApi(server, route.method, route.path, issued.accessToken, route.body);

    t.equal(response.status, 403, label);
    t.same(
      response.body,
      {
        error: 'insufficient_scope',
        error_description: `This request requires the scope ${route.scope}`,
        scope: route.scope,
      },
      label,
    );
    const challenge = response.headers.get('www-authenticate') ?? '';
    t.match(challenge, 'error="insufficient_scope"', label);
    t.match(challenge, `scope="${route.scope}"`, label);
    t.match(challenge, `resource_metadata="${metadataUrl}"`, label);
  }
});

t.test('GET me returns the profile', async (t) => {
  const user = await createTestUser(server, undefined, 'Grace Hopper');
  const issued = await issueTestTokens(server, { user, scope: 'read:profile' });

  const response = await callApi(server, 'GET', '/api/v1/me', issued.accessToken);
  t.equal(response.status, 200);
  t.same(response.body, {
    id: user.id,
    email: user.email,
    name: 'Grace Hopper',
    created_at: user.created_at.toISOString(),
  });
});

t.test('PATCH me changes the name', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile write:profile' });

  const response = await callApi(server, 'PATCH', '/api/v1/me/', issued.accessToken, { name: '  Ada Lovelace  ' });
  t.equal(response.status, 200);
  t.equal(response.body.name, 'Ada Lovelace', 'the name is trimmed');

  const me = await callApi(server, 'GET', '/api/v1/me/', issued.accessToken);
  t.equal(me.body.name, 'Ada Lovelace');
});

t.test('PATCH me validation names the field', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile write:profile' });
  const before = await callApi(server, 'GET', '/api/v1/me/', issued.accessToken);

  const cases: [string, unknown, string][] = [
    ['no name', {}, "body must have required property 'name'"],
    ['empty name', { name: '' }, 'body/name must NOT have fewer than 1 characters'],
    ['blank name', { name: '   ' }, 'body/name must match pattern "\\S"'],
    ['long name', { name: 'a'.repeat(101) }, 'body/name must NOT have more than 100 characters'],
    ['array body', [{ name: 'x' }], 'body must be object'],
  ];
  for (const [label, body, description] of cases) {
    const response = await callApi(server, 'PATCH', '/api/v1/me/', issued.accessToken, body);
    t.equal(response.status, 400, label);
    t.same(response.body, invalidRequest(description), label);
  }

  const after = await callApi(server, 'GET', '/api/v1/me/', issued.accessToken);
  t.equal(after.body.name, before.body.name, 'the name is unchanged');
});

t.test('PATCH me rejects a non-JSON body', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'write:profile' });
  const response = await fetch(`${server.url}/api/v1/me/`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${issued.accessToken}`, 'content-type': 'application/json' },
    body: '{"name":',
  });

  t.equal(response.status, 400);
  t.same(await response.json(), invalidRequest('The request body could not be parsed'));
});

t.test('GET teams lists members', async (t) => {
  const owner = await createTestUser(server, undefined, 'Alice Owner');
  const member = await createTestUser(server, undefined, 'Bob Member');
  const teamId = await teamOf(owner);
  await addMember(teamId, member);

  const issued = await issueTestTokens(server, { user: owner, scope: 'read:teams' });
  const response = await callApi(server, 'GET', '/api/v1/teams/', issued.accessToken);

  t.equal(response.status, 200);
  t.same(response.body, {
    teams: [
      {
        id: teamId,
        name: "Alice Owner's team",
        members: [
          { id: owner.id, name: 'Alice Owner', email: owner.email, role: 'owner' },
          { id: member.id, name: 'Bob Member', email: member.email, role: 'member' },
        ],
      },
    ],
  });

  const memberTokens = await issueTestTokens(server, { user: member, scope: 'read:teams' });
  const memberView = await callApi(server, 'GET', '/api/v1/teams/', memberTokens.accessToken);
  t.same(
    memberView.body.teams.map((team: { name: string }) => team.name),
    ["Alice Owner's team", "Bob Member's team"],
    'a member sees both teams',
  );
});

t.test('invitation by a member is created', async (t) => {
  const owner = await createTestUser(server, undefined, 'Owner');
  const member = await createTestUser(server, undefined, 'Member');
  const teamId = await teamOf(owner);
  await addMember(teamId, member);
  const issued = await issueTestTokens(server, { user: member, scope: 'write:teams' });

  const path = `/api/v1/teams/${teamId}/invitations/`;
  const response = await callApi(server, 'POST', path, issued.accessToken, { email: 'Carol@Example.com' });
  t.equal(response.status, 201);
  t.same(Object.keys(response.body).sort(), ['created_at', 'email', 'id', 'role', 'team_id']);
  t.equal(response.body.team_id, teamId);
  t.equal(response.body.email, 'carol@example.com', 'the email is stored lower case');
  t.equal(response.body.role, 'member');

  const { db } = server.app.speedgate;
  const stored = await db.selectFrom('team_invitations').selectAll().where('id', '=', response.body.id).execute();
  t.equal(stored.length, 1);
  t.equal(stored[0].invited_by, member.id);
});

t.test('only owners invite owners', async (t) => {
  const owner = await createTestUser(server);
  const member = await createTestUser(server);
  const teamId = await teamOf(owner);
  await addMember(teamId, member);
  const path = `/api/v1/teams/${teamId}/invitations/`;

  const memberTokens = await issueTestTokens(server, { user: member, scope: 'write:teams' });
  const rejected = await callApi(server, 'POST', path, memberTokens.accessToken, { email: 'x@example.com', role: 'owner' });
  t.equal(rejected.status, 403);
  t.same(rejected.body, { error: 'forbidden', error_description: 'Only a team owner can invite another owner' });

  const ownerTokens = await issueTestTokens(server, { user: owner, scope: 'write:teams' });
  const allowed = await callApi(server, 'POST', path, ownerTokens.accessToken, { email: 'x@example.com', role: 'owner' });
  t.equal(allowed.status, 201);
  t.equal(allowed.body.role, 'owner');
});

t.test('invitation by a non-member is 404', async (t) => {
  const owner = await createTestUser(server);
  const outsider = await createTestUser(server);
  const teamId = await teamOf(owner);
  const issued = await issueTestTokens(server, { user: outsider, scope: 'write:teams' });
  const notFound = { error: 'not_found', error_description: 'No team with this id among your teams' };

  const existing = await callApi(server, 'POST', `/api/v1/teams/${teamId}/invitations/`, issued.accessToken, {
    email: 'x@example.com',
  });
  t.equal(existing.status, 404);
  t.same(existing.body, notFound);

  const missing = await callApi(server, 'POST', '/api/v1/teams/no-such-team/invitations/', issued.accessToken, {
    email: 'x@example.com',
  });
  t.equal(missing.status, 404, 'an existing team and a missing one look the same');
  t.same(missing.body, notFound);

  const { db } = server.app.speedgate;
  const stored = await db.selectFrom('team_invitations').select('id').where('team_id', '=', teamId).execute();
  t.equal(stored.length, 0, 'no invitation is stored');
});

t.test('duplicate invitation is 409', async (t) => {
  const owner = await createTestUser(server);
  const teamId = await teamOf(owner);
  const issued = await issueTestTokens(server, { user: owner, scope: 'write:teams' });
  const path = `/api/v1/teams/${teamId}/invitations/`;

  const first = await callApi(server, 'POST', path, issued.accessToken, { email: 'dave@example.com' });
  t.equal(first.status, 201);

  const again = await callApi(server, 'POST', path, issued.accessToken, { email: 'DAVE@example.com' });
  t.equal(again.status, 409);
  t.same(again.body, { error: 'conflict', error_description: 'This email address is already invited' });
});

t.test('invitation validation names the field', async (t) => {
  const owner = await createTestUser(server);
  const teamId = await teamOf(owner);
  const issued = await issueTestTokens(server, { user: owner, scope: 'write:teams' });
  const path = `/api/v1/teams/${teamId}/invitations/`;
  const emailPattern = 'body/email must match pattern "^[^\\s@]+@[^\\s@]+\\.[^\\s@]+$"';

  const cases: [string, string, unknown, string][] = [
    ['bad email', path, { email: 'not-an-email' }, emailPattern],
    ['email with a space', path, { email: 'a b@example.com' }, emailPattern],
    ['no email', path, {}, "body must have required property 'email'"],
    ['long email', path, { email: `${'a'.repeat(250)}@example.com` }, 'body/email must NOT have more than 254 characters'],
    ['team id too long', `/api/v1/teams/${'a'.repeat(65)}/invitations/`, { email: 'x@example.com' }, 'params/id must NOT have more than 64 characters'],
    ['team id with a dot', '/api/v1/teams/a.b/invitations/', { email: 'x@example.com' }, 'params/id must match pattern "^[A-Za-z0-9_-]+$"'],
  ];
  for (const [label, target, body, description] of cases) {
    const response = await callApi(server, 'POST', target, issued.accessToken, body);
    t.equal(response.status, 400, label);
    t.same(response.body, invalidRequest(description), label);
  }

  const role = await callApi(server, 'POST', path, issued.accessToken, { email: 'x@example.com', role: 'admin' });
  t.equal(role.status, 400, 'unknown role');
  t.equal(role.body.error, 'invalid_request', 'unknown role');
  t.match(role.body.error_description, /^body\/role /, 'the message names the role field');

  const { db } = server.app.speedgate;
  const stored = await db.selectFrom('team_invitations').select('id').where('team_id', '=', teamId).execute();
  t.equal(stored.length, 0, 'no invitation is stored');
});

t.test('GET products lists the catalogue', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:products' });
  const response = await callApi(server, 'GET', '/api/v1/products/', issued.accessToken);

  t.equal(response.status, 200);
  t.same(
    response.body.products.map((product: { id: string }) => product.id),
    ['prod_starter', 'prod_team', 'prod_enterprise'],
    'sorted by price',
  );
  t.same(response.body.products[1], {
    id: 'prod_team',
    name: 'Team',
    description: 'Unlimited projects for up to 20 members',
    price_cents: 4900,
  });
});

t.test('every scope opens every route', async (t) => {
  const issued = await issueTestTokens(server, { scope: ALL_SCOPES });
  const teamId = await teamOf(issued.user);

  for (const route of ROUTES) {
    const path = route.path.replace('some-team', teamId);
    const response = await callApi(server, route.method, path, issued.accessToken, route.body);
    t.ok(response.status === 200 || response.status === 201, `${route.method} ${path}: ${response.status}`);
  }
});

t.test('token for another audience is rejected', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });

  const control = await callApi(server, 'GET', '/api/v1/me/', await resign(issued, {}));
  t.equal(control.status, 200, 'the re-signed token with unchanged claims works');

  for (const aud of ['https://mcp.speedgate.test/mcp', `${server.url}/api/v2`, `${server.url}/mcp`]) {
    const response = await callApi(server, 'GET', '/api/v1/me/', await resign(issued, { aud }));
    t.equal(response.status, 401, aud);
    t.same(response.body, invalidToken, aud);
  }
});

t.test('token from another issuer is rejected', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });
  const token = await resign(issued, { iss: 'https://other-issuer.speedgate.test' });

  const response = await callApi(server, 'GET', '/api/v1/me/', token);
  t.equal(response.status, 401);
  t.same(response.body, invalidToken);
});

t.test('token without at+jwt type is rejected', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });
  const { db } = server.app.speedgate;
  const key = await db
    .selectFrom('signing_keys')
    .select(['kid', 'private_jwk'])
    .where('retired_at', 'is', null)
    .executeTakeFirstOrThrow();
  const privateKey = await importJWK(key.private_jwk as JWK, 'ES256');

  const claims = decodeJwt(issued.accessToken);
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' }).sign(privateKey);

  const response = await callApi(server, 'GET', '/api/v1/me/', token);
  t.equal(response.status, 401);
  t.same(response.body, invalidToken);
});

t.test('unsigned token is rejected', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });
  const [, payload] = issued.accessToken.split('.');
  const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url');

  const response = await callApi(server, 'GET', '/api/v1/me/', `${header}.${payload}.`);
  t.equal(response.status, 401);
  t.same(response.body, invalidToken);
});

t.test('expired access token is rejected', async (t) => {
  const issued = await issueTestTokens(server, { scope: 'read:profile' });

  server.clock.advance(3600);
  const response = await callApi(server, 'GET', '/api/v1/me/', issued.accessToken);
  t.equal(response.status, 401);
  t.same(response.body, invalidToken);
});
