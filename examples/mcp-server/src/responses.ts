import type { ServerResponse } from 'node:http';

/** Sends `body` as JSON with `status` and any extra headers. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/**
 * Sends a JSON-RPC error response with `id: null`, as the MCP transport does
 * for a request it rejects before reading a message.
 */
export function sendJsonRpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null }, headers);
}

/** JSON-RPC 2.0 error codes used here: parse error, and the range reserved for the server. */
export const JSON_RPC_PARSE_ERROR = -32700;
export const JSON_RPC_SERVER_ERROR = -32000;
