import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { logEvent } from './log.ts';
import type { StdioSettings } from './settings.ts';
import { createMcpServer } from './tools.ts';

/**
 * Serves MCP over standard input and output. Every tool call sends the
 * personal access token from SPEEDGATE_TOKEN to the API, which is what a
 * local MCP server does for the one user who started it.
 */
export async function runStdio(settings: StdioSettings): Promise<void> {
  const server = createMcpServer({
    speedgateUrl: settings.speedgateUrl,
    apiToken: async () => settings.token,
    hints: {
      unauthorized: 'Check that SPEEDGATE_TOKEN contains an active personal access token.',
      missingScope: 'Create a personal access token with that scope and set SPEEDGATE_TOKEN to it.',
    },
  });

  await server.connect(new StdioServerTransport());
  logEvent('info', 'MCP server running on stdio', { speedgate: settings.speedgateUrl });
}
