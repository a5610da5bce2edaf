import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { bearerChallenge, createTokenVerifier, type BearerResult, type VerifiedToken } from './bearer.ts';
import { logEvent } from './log.ts';
import { metadataUrl } from './resource-metadata.ts';
import { JSON_RPC_PARSE_ERROR, JSON_RPC_SERVER_ERROR, sendJson, sendJsonRpcError } from './responses.ts';
import type { HttpSettings } from './settings.ts';
import { callsTool, missingScopes } from './step-up.ts';
import { ExchangeError, TokenExchanger } from './token-exchange.ts';
import { createMcpServer, type ApiAccess } from './tools.ts';

/** Maximum size of a request body, in bytes. The tools take no arguments, so requests are small. */
const MAX_BODY_BYTES = 1024 * 1024;

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

type BodyResult = { ok: true; value: unknown } | { ok: false; status: number; code: number; message: string };

async function readJsonBody(req: IncomingMessage): Promise<BodyResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      const message = `The body exceeds ${MAX_BODY_BYTES} bytes`;
      return { ok: false, status: 413, code: JSON_RPC_SERVER_ERROR, message };
    }
    chunks.push(chunk);
  }

  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  } catch {
    const message = 'Parse error: the body is not valid JSON';
    return { ok: false, status: 400, code: JSON_RPC_PARSE_ERROR, message };
  }
}

function isJson(req: IncomingMessage): boolean {
  return /^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '');
}

type TokenFailure = Extract<BearerResult, { ok: false }>;

/** Sends a 401 (or 400, 503) response with an RFC 6750 challenge that names the resource metadata. */
function rejectToken(res: ServerResponse, failure: TokenFailure, challengeUrl: string): void {
  const { status, error, description } = failure;
  const headers: Record<string, string> = {};
  if (status !== 503) {
    const fields: Record<string, string> = error === undefined ? {} : { error, error_description: description };
    headers['www-authenticate'] = bearerChallenge(challengeUrl, fields);
  }

  const code = error ?? (status === 503 ? 'temporarily_unavailable' : 'invalid_token');
  logEvent('info', 'rejected an MCP request', { status, reason: description });
  sendJson(res, status, { error: code, error_description: description }, headers);
}

/**
 * Sends a 403 insufficient_scope response (RFC 6750 section 3.1). The
 * challenge's `scope` lists the granted scopes and the missing ones, so a
 * client that requests exactly that scope keeps what it had.
 */
function rejectScope(
  res: ServerResponse,
  verified: VerifiedToken,
  missing: string[],
  challengeUrl: string,
): void {
  const scope = [...new Set([...verified.scopes, ...missing])].join(' ');
  const fields = {
    error: 'insufficient_scope',
    error_description: `This tool requires the scope ${missing.join(' ')}`,
    scope,
  };

  logEvent('info', 'rejected a tool call for a missing scope', { subject: verified.subject, missing });
  sendJson(res, 403, fields, { 'www-authenticate': bearerChallenge(challengeUrl, fields) });
}

/**
 * Exchanges the token before a tool call runs, so a revoked authorization
 * gets a 401 response and the client signs in again. Returns false after
 * sending that response. The tool reports any other failure itself.
 */
async function exchangeBeforeToolCall(
  res: ServerResponse,
  exchanger: TokenExchanger,
  token: string,
  challengeUrl: string,
): Promise<boolean> {
  try {
    await exchanger.apiToken(token);
  } catch (error) {
    if (!(error instanceof ExchangeError) || error.code !== 'invalid_grant') return true;

    const failure: TokenFailure = { ok: false, status: 401, error: 'invalid_token', description: error.message };
    rejectToken(res, failure, challengeUrl);
    return false;
  }
  return true;
}

function apiAccess(settings: HttpSettings, exchanger: TokenExchanger, token: string): ApiAccess {
  return {
    speedgateUrl: settings.speedgateUrl,
    apiToken: () => exchanger.apiToken(token),
    onUnauthorized: () => exchanger.forget(token),
    hints: {
      unauthorized: 'Sign in to this MCP server again.',
      missingScope: 'Sign in to this MCP server again and approve that scope.',
    },
  };
}

/** Runs one request through a new stateless MCP server, so requests share no state but the token cache. */
async function serveMcp(
  req: IncomingMessage,
  res: ServerResponse,
  body: unknown,
  access: ApiAccess,
): Promise<void> {
  const server = createMcpServer(access);
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
}

/**
 * Creates the handler of the MCP endpoint: a bearer token for this resource
 * on every request, POST only (the server keeps no sessions, so it offers no
 * GET stream), and the scope each called tool needs.
 */
export function createMcpEndpoint(settings: HttpSettings): RequestHandler {
  const verify = createTokenVerifier(settings.speedgateUrl, settings.resource);
  const exchanger = new TokenExchanger(settings);
  const challengeUrl = metadataUrl(settings);

  return async (req, res) => {
    const auth = await verify(req.headers.authorization);
    if (!auth.ok) return rejectToken(res, auth, challengeUrl);

    const access = apiAccess(settings, exchanger, auth.verified.token);
    if (req.method !== 'POST') {
      const message = 'Method not allowed; this server accepts only POST';
      return sendJsonRpcError(res, 405, JSON_RPC_SERVER_ERROR, message, { allow: 'POST' });
    }
    // The transport rejects other content types itself, with 415.
    if (!isJson(req)) return serveMcp(req, res, undefined, access);

    const body = await readJsonBody(req);
    if (!body.ok) return sendJsonRpcError(res, body.status, body.code, body.message);

    const missing = missingScopes(body.value, auth.verified.scopes);
    if (missing.length > 0) return rejectScope(res, auth.verified, missing, challengeUrl);
    if (callsTool(body.value)) {
      const exchanged = await exchangeBeforeToolCall(res, exchanger, auth.verified.token, challengeUrl);
      if (!exchanged) return;
    }

    await serveMcp(req, res, body.value, access);
  };
}
