import path from 'node:path';
import type { Readable } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import t, { type Test } from 'tap';
import { createPat, revokePat } from '../src/accounts/personal-access-tokens.ts';
import { createUser } from '../src/accounts/users.ts';
import { startServer } from './helpers/server.ts';
import { MCP_SERVER, ROOT, childEnv, runProcess } from './mcp-server-fixture.ts';

const EMAIL = 'ada@example.com';

// Only this process opens the database: the MCP server reaches Speedgate over HTTP.
const server = await startServer(t);
const { db, scopes } = server.app.speedgate;
const newUser = { email: EMAIL, password: 'correct horse battery', name: 'Ada' };
const user = await createUser(db, newUser, server.clock.now());

async function createToken(scopeNames: string[]) {
  const input = { name: 'MCP server', scopes: scopeNames, expiresAt: null };
  return createPat(db, scopes, user, input, server.clock.now());
}

/** Starts the example in stdio mode through the SDK's transport and connects a client to it. */
async function connectStdio(t: Test, token: string) {
  const transport = new StdioClientTransport({
    command: path.join(ROOT, MCP_SERVER),
    args: ['stdio'],
    cwd: ROOT,
    env: childEnv({ SPEEDGATE_URL: server.url, SPEEDGATE_TOKEN: token }),
    stderr: 'pipe',
  });
  let stderr = '';
  (transport.stderr as Readable | null)?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));

  const client = new Client({ name: 'speedgate-stdio-test', version: '1.0.0' });
  await client.connect(transport);
  t.teardown(() => client.close());
  return { client, stderr: () => stderr };
}

function toolText(result: unknown): string {
  const content = (result as CallToolResult).content[0];
  return content.type === 'text' ? content.text : '';
}

t.test('tools call the API', async (t) => {
  const { token } = await createToken(['read:profile', 'read:teams']);
  const { client, stderr } = await connectStdio(t, token);

  const { tools } = await client.listTools();
  t.same(tools.map((tool) => tool.name), ['get_profile', 'list_teams', 'list_products']);

  const profile = await client.callTool({ name: 'get_profile', arguments: {} });
  t.notOk(profile.isError, 'get_profile succeeds');
  t.equal(JSON.parse(toolText(profile)).email, EMAIL);

  const teams = await client.callTool({ name: 'list_teams', arguments: {} });
  t.notOk(teams.isError, 'list_teams succeeds');
  t.equal(JSON.parse(toolText(teams)).teams[0].members[0].email, EMAIL);

  t.match(stderr(), /"message":"MCP server running on stdio"/);
  t.notMatch(stderr(), token, 'the server logs no token');
});

t.test('missing scope is a tool error', async (t) => {
  const { token } = await createToken(['read:profile']);
  const { client } = await connectStdio(t, token);

  const products = await client.callTool({ name: 'list_products', arguments: {} });
  t.equal(products.isError, true);
  t.equal(
    toolText(products),
    'list_products needs the scope read:products, which this token was not granted. ' +
      'Create a personal access token with that scope and set SPEEDGATE_TOKEN to it.',
  );
});

t.test('revoked token is a tool error', async (t) => {
  const { token, row } = await createToken(['read:profile']);
  const { client } = await connectStdio(t, token);
  t.ok(await revokePat(db, user.id, row.id, server.clock.now()));

  const profile = await client.callTool({ name: 'get_profile', arguments: {} });
  t.equal(profile.isError, true);
  t.equal(
    toolText(profile),
    'Speedgate rejected the access token for get_profile: The personal access token is invalid, expired or revoked. ' +
      'Check that SPEEDGATE_TOKEN contains an active personal access token.',
  );
});

t.test('unreachable server is a tool error', async (t) => {
  const { token } = await createToken(['read:profile']);
  const transport = new StdioClientTransport({
    command: path.join(ROOT, MCP_SERVER),
    args: ['stdio'],
    cwd: ROOT,
    // Port 9 (discard) on loopback: nothing listens there, so the connection is refused at once.
    env: childEnv({ SPEEDGATE_URL: 'http://127.0.0.1:9', SPEEDGATE_TOKEN: token }),
    stderr: 'pipe',
  });
  const client = new Client({ name: 'speedgate-stdio-test', version: '1.0.0' });
  await client.connect(transport);
  t.teardown(() => client.close());

  const profile = await client.callTool({ name: 'get_profile', arguments: {} });
  t.equal(profile.isError, true);
  const refused = /^GET \/api\/v1\/me\/ failed with no response: Could not reach http:\/\/127\.0\.0\.1:9\/api\/v1\/me\/: /;
  t.match(toolText(profile), refused);
});

t.test('configuration mistakes exit 2', async (t) => {
  const cases: [string[], Record<string, string>, string][] = [
    [['stdio'], {}, 'error: SPEEDGATE_TOKEN is missing; set it to a personal access token (spd_...)\n'],
    [
      ['stdio'],
      { SPEEDGATE_URL: 'http://speedgate.example', SPEEDGATE_TOKEN: 'spd_x' },
      'error: SPEEDGATE_URL must use https unless the host is a loopback address, got "http://speedgate.example"\n',
    ],
    [
      ['http'],
      {},
      'error: MCP_PUBLIC_URL is missing; set it to the URL clients use for this server, such as http://127.0.0.1:8787/mcp\n',
    ],
    [
      ['http', '--port', 'eighty'],
      { MCP_PUBLIC_URL: 'http://127.0.0.1:8787/mcp', MCP_CLIENT_ID: 'id', MCP_CLIENT_SECRET: 'secret' },
      'error: --port must be a whole number from 0 to 65535, got "eighty"\n',
    ],
    [[], {}, 'error: Give the mode as stdio or http, got "". Run speedgate-mcp --help.\n'],
  ];

  const results = await Promise.all(cases.map(([args, env]) => runProcess(MCP_SERVER, args, childEnv(env))));
  cases.forEach(([args, , expected], index) => {
    t.equal(results[index].code, 2, `"${args.join(' ')}" exits 2`);
    t.equal(results[index].stderr, expected);
    t.equal(results[index].stdout, '', 'nothing on standard output');
  });
});

t.test('help prints the usage', async (t) => {
  const result = await runProcess(MCP_SERVER, ['--help'], childEnv({}));
  t.equal(result.code, 0);
  t.match(result.stdout, /^Usage: speedgate-mcp stdio/);
  t.match(result.stdout, /MCP_PUBLIC_URL/);
});
