import type { Server } from 'node:http';
import { parseArgs } from 'node:util';
import { startHttpServer } from './http-server.ts';
import { errorMessage, logEvent } from './log.ts';
import { SettingsError, readHttpSettings, readStdioSettings } from './settings.ts';
import { runStdio } from './stdio.ts';

const HELP = `Usage: speedgate-mcp stdio
       speedgate-mcp http [--port PORT] [--host HOST]

An MCP server whose tools call the Speedgate API: get_profile, list_teams
and list_products.

Modes:
  stdio   Serve one local client over standard input and output. The tools
          send the personal access token in SPEEDGATE_TOKEN to the API.
  http    Serve Streamable HTTP as an OAuth protected resource of Speedgate.
          Clients send access tokens issued for MCP_PUBLIC_URL; the server
          exchanges each for an API token (RFC 8693).

Options (http):
  --port PORT   TCP port to listen on (default: 8787)
  --host HOST   Address to listen on (default: 127.0.0.1)
  -h, --help    Print this help

Environment:
  SPEEDGATE_URL       Speedgate's issuer URL (default: http://localhost:3000)
  SPEEDGATE_TOKEN     stdio: a personal access token (spd_...)
  MCP_PUBLIC_URL      http: the URL clients use for the MCP endpoint, such as
                      http://127.0.0.1:8787/mcp; the audience of accepted tokens
  MCP_CLIENT_ID       http: this server's confidential client at Speedgate
  MCP_CLIENT_SECRET   http: that client's secret

Logs go to standard error as JSON lines. Exit status: 0 after a clean stop,
1 on a failure, 2 on a command-line or configuration mistake.`;

function parseCommandLine(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new SettingsError(`${errorMessage(error)}. Run speedgate-mcp --help for the options.`);
  }
}

/** Stops the HTTP server on SIGINT or SIGTERM: no new connections, open ones closed, exit status 0. */
function stopOnSignal(server: Server): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      logEvent('info', 'MCP server stopping', { signal });
      server.close(() => process.exit(0));
      server.closeAllConnections();
    });
  }
}

async function main(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(args);
  if (values.help) {
    console.log(HELP);
    return;
  }

  const [mode, ...extra] = positionals;
  if (extra.length > 0) {
    throw new SettingsError(`Unexpected argument "${extra[0]}". Run speedgate-mcp --help for the usage.`);
  }
  if (mode === 'stdio') return runStdio(readStdioSettings(process.env));
  if (mode === 'http') {
    stopOnSignal(await startHttpServer(readHttpSettings(process.env, values)));
    return;
  }
  throw new SettingsError(`Give the mode as stdio or http, got "${mode ?? ''}". Run speedgate-mcp --help.`);
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof SettingsError)) {
    logEvent('error', 'MCP server failed to start', { error: errorMessage(error) });
    process.exit(1);
  }
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(2);
}
