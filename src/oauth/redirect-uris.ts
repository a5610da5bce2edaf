import type { Client } from '../db/schema.ts';

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]']);

function withoutPort(uri: string): string | undefined {
  try {
    const url = new URL(uri);
    if (url.protocol !== 'http:' || !LOOPBACK_HOSTS.has(url.hostname)) return undefined;
    url.port = '';
    return url.href;
  } catch {
    return undefined;
  }
}

/**
 * Returns whether `uri` is one of the client's registered redirect URIs,
 * compared as exact strings. The one exception is RFC 8252 section 7.3: a
 * native app on `http://127.0.0.1` or `http://[::1]` may use any port.
 */
export function matchesRegisteredRedirectUri(client: Client, uri: string): boolean {
  if (client.redirect_uris.includes(uri)) return true;

  const loopback = withoutPort(uri);
  if (loopback === undefined) return false;
  return client.redirect_uris.some((registered) => withoutPort(registered) === loopback);
}

/** Appends response parameters to a redirect URI, keeping the query it already has. */
export function buildRedirect(redirectUri: string, parameters: Record<string, string | undefined>): string {
  const url = new URL(redirectUri);
  for (const [name, value] of Object.entries(parameters)) {
    if (value !== undefined) url.searchParams.append(name, value);
  }
  return url.href;
}
