import { UsageError } from './errors.ts';

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Validates a Speedgate server URL and returns it without a trailing slash.
 * Tokens travel in these requests, so plain http is accepted on a loopback
 * address only.
 */
export function parseServerUrl(raw: string, source: string): string {
  if (!URL.canParse(raw)) {
    const example = 'https://auth.example.com';
    throw new UsageError(`${source} must be an absolute URL such as ${example}, got "${raw}"`);
  }

  const url = new URL(raw);
  const loopbackHttp = url.protocol === 'http:' && isLoopback(url.hostname);
  if (url.protocol !== 'https:' && !loopbackHttp) {
    const allowed = 'https, or http on a loopback address such as http://127.0.0.1:3000';
    throw new UsageError(`${source} must use ${allowed}, got "${raw}"`);
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new UsageError(`${source} must not contain a query, fragment or user name, got "${raw}"`);
  }
  return url.href.replace(/\/+$/, '');
}

/**
 * Returns the server URL from the `--server` option, or from SPEEDGATE_SERVER
 * when the option is absent. Throws a usage error when neither is set.
 */
export function serverFromSettings(option: string | undefined, env: NodeJS.ProcessEnv): string {
  const raw = option ?? env.SPEEDGATE_SERVER;
  if (raw === undefined || raw.trim() === '') {
    throw new UsageError('Missing --server. Give it as an option or set SPEEDGATE_SERVER.');
  }
  return parseServerUrl(raw.trim(), option === undefined ? 'SPEEDGATE_SERVER' : '--server');
}
