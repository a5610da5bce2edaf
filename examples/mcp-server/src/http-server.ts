import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { errorMessage, logEvent } from './log.ts';
import { createMcpEndpoint, type RequestHandler } from './mcp-endpoint.ts';
import { metadataPaths, protectedResourceMetadata } from './resource-metadata.ts';
import { JSON_RPC_SERVER_ERROR, sendJson, sendJsonRpcError } from './responses.ts';
import type { HttpSettings } from './settings.ts';

/**
 * Returns why a request's Host or Origin header does not match the public
 * URL, or undefined when both match. A DNS rebinding attack sends a foreign
 * host name to this server's address, and a browser adds a foreign Origin.
 */
function checkHostAndOrigin(req: IncomingMessage, publicUrl: URL): string | undefined {
  const host = req.headers.host ?? '';
  let requested: string;
  try {
    requested = new URL(`${publicUrl.protocol}//${host}`).host;
  } catch {
    return `Invalid Host header: ${host}`;
  }
  if (requested !== publicUrl.host) return `Invalid Host header: ${host}`;

  const origin = req.headers.origin;
  if (origin !== undefined && origin !== publicUrl.origin) return `Invalid Origin header: ${origin}`;
  return undefined;
}

function createRouter(settings: HttpSettings): RequestHandler {
  const publicUrl = new URL(settings.resource);
  const metadata = protectedResourceMetadata(settings);
  const wellKnownPaths = metadataPaths(settings);
  const mcpEndpoint = createMcpEndpoint(settings);

  return async (req, res) => {
    const problem = checkHostAndOrigin(req, publicUrl);
    if (problem !== undefined) {
      logEvent('info', 'rejected a request for its Host or Origin header', { reason: problem });
      return sendJsonRpcError(res, 403, JSON_RPC_SERVER_ERROR, problem);
    }

    // As on Speedgate, a path works with and without its trailing slash.
    const pathname = new URL(req.url ?? '/', publicUrl.origin).pathname;
    const path = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
    if (wellKnownPaths.includes(path) && (req.method === 'GET' || req.method === 'HEAD')) {
      return sendJson(res, 200, metadata, { 'cache-control': 'public, max-age=3600' });
    }
    if (path === settings.mcpPath) return mcpEndpoint(req, res);
    sendJson(res, 404, { error: 'not_found', error_description: `No route for ${path}` });
  };
}

function handleFailure(res: ServerResponse, error: unknown): void {
  logEvent('error', 'request failed', { error: errorMessage(error) });
  if (!res.headersSent) sendJsonRpcError(res, 500, JSON_RPC_SERVER_ERROR, 'Internal server error');
  else res.destroy();
}

/** Starts the Streamable HTTP server on `settings.host` and `settings.port` and resolves once it listens. */
export async function startHttpServer(settings: HttpSettings): Promise<Server> {
  const route = createRouter(settings);
  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => handleFailure(res, error));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, settings.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : settings.port;
  logEvent('info', 'MCP server listening', { host: settings.host, port, resource: settings.resource });
  return server;
}
