import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ApiError, getApiJson } from './api.ts';
import { logEvent } from './log.ts';
import { ExchangeError } from './token-exchange.ts';

/** One MCP tool backed by one read-only endpoint of the Speedgate API. */
export interface ApiTool {
  name: string;
  title: string;
  description: string;
  path: string;
  /** The scope the API requires for `path`. */
  scope: string;
}

export const API_TOOLS: readonly ApiTool[] = [
  {
    name: 'get_profile',
    title: 'Get profile',
    description: "Returns the signed-in user's Speedgate profile: id, email, name and creation time.",
    path: '/api/v1/me/',
    scope: 'read:profile',
  },
  {
    name: 'list_teams',
    title: 'List teams',
    description: "Lists the user's teams with each member's name, email and role.",
    path: '/api/v1/teams/',
    scope: 'read:teams',
  },
  {
    name: 'list_products',
    title: 'List products',
    description: 'Lists the products of the Speedgate demo API.',
    path: '/api/v1/products/',
    scope: 'read:products',
  },
];

/** Every scope a tool needs, as HTTP mode advertises them in its resource metadata. */
export const TOOL_SCOPES: readonly string[] = API_TOOLS.map((tool) => tool.scope);

export const SERVER_INFO = { name: 'speedgate-mcp', version: '0.1.0' };

/** The tools' access to the API: a token source, and what to tell the user when the API rejects it. */
export interface ApiAccess {
  speedgateUrl: string;
  apiToken(): Promise<string>;
  /** Runs after the API rejected the token with 401, for example to drop a cached token. */
  onUnauthorized?(): void;
  /** Sentences telling the user how to get a working token: after a 401, and after a missing scope. */
  hints: { unauthorized: string; missingScope: string };
}

/** Builds the text of a tool error from an API or token exchange failure. */
export function describeFailure(tool: ApiTool, error: ApiError | ExchangeError, access: ApiAccess): string {
  if (error instanceof ExchangeError) {
    return `Speedgate rejected the token exchange for ${tool.name} (${error.code}): ${error.message}`;
  }
  if (error.status === 403 && error.code === 'insufficient_scope') {
    const scope = error.scope ?? tool.scope;
    const problem = `${tool.name} needs the scope ${scope}, which this token was not granted.`;
    return `${problem} ${access.hints.missingScope}`;
  }
  if (error.status === 401) {
    const problem = `Speedgate rejected the access token for ${tool.name}: ${error.message}.`;
    return `${problem} ${access.hints.unauthorized}`;
  }

  const status = error.status === 0 ? 'no response' : `HTTP ${error.status}`;
  return `GET ${tool.path} failed with ${status}: ${error.message}`;
}

async function callTool(tool: ApiTool, access: ApiAccess): Promise<CallToolResult> {
  try {
    const body = await getApiJson(access.speedgateUrl, tool.path, await access.apiToken());
    return { content: [{ type: 'text', text: JSON.stringify(body, null, 2) }] };
  } catch (error) {
    if (!(error instanceof ApiError) && !(error instanceof ExchangeError)) throw error;

    if (error instanceof ApiError && error.status === 401) access.onUnauthorized?.();
    const text = describeFailure(tool, error, access);
    logEvent('warn', 'tool call failed', { tool: tool.name, status: error.status, error: error.code });
    return { isError: true, content: [{ type: 'text', text }] };
  }
}

/** Creates an MCP server with one read-only tool for each entry of API_TOOLS. */
export function createMcpServer(access: ApiAccess): McpServer {
  const server = new McpServer(SERVER_INFO, { capabilities: { tools: {} } });
  for (const tool of API_TOOLS) {
    server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: `${tool.description} Needs the scope ${tool.scope}.`,
        annotations: { readOnlyHint: true, openWorldHint: false },
      },
      async () => callTool(tool, access),
    );
  }
  return server;
}
