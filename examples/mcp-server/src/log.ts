/**
 * Writes one JSON line per event to standard error. Standard output is never
 * used, because in stdio mode it carries the MCP messages. Callers pass no
 * tokens or secrets in `fields`.
 */
export function logEvent(
  level: 'info' | 'warn' | 'error',
  message: string,
  fields: Record<string, unknown> = {},
): void {
  const line = { time: new Date().toISOString(), level, message, ...fields };
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

/**
 * Returns an error's message for a log line, followed by its cause's message
 * when there is one (Node's fetch puts the socket error, such as
 * ECONNREFUSED, in `cause`).
 */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);

  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause === undefined ? error.message : `${error.message}: ${cause}`;
}
