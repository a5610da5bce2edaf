import { API_TOOLS } from './tools.ts';

function toolCallScope(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null) return undefined;

  const { method, params } = message as { method?: unknown; params?: { name?: unknown } };
  if (method !== 'tools/call' || typeof params !== 'object' || params === null) return undefined;
  return API_TOOLS.find((tool) => tool.name === params.name)?.scope;
}

function asMessages(body: unknown): unknown[] {
  return Array.isArray(body) ? body : [body];
}

/** Returns whether a JSON-RPC body (one message or a batch) calls any tool of this server. */
export function callsTool(body: unknown): boolean {
  return asMessages(body).some((message) => toolCallScope(message) !== undefined);
}

/**
 * Returns the scopes that the body's `tools/call` requests need and the
 * token was not granted, so the request can be rejected with 403
 * insufficient_scope before any tool runs.
 */
export function missingScopes(body: unknown, granted: readonly string[]): string[] {
  const needed = asMessages(body)
    .map(toolCallScope)
    .filter((scope): scope is string => scope !== undefined);
  return [...new Set(needed)].filter((scope) => !granted.includes(scope));
}
