import type { Config } from '../config.ts';
import { apiResource } from './context.ts';
import { OAuthError } from './errors.ts';

/**
 * Normalizes a resource URI for comparison: the URL parser's form with the
 * trailing slash of the path removed, so `https://host`, `https://host/` and
 * `https://host/api/v1/` match `https://host/api/v1` where appropriate.
 * Returns undefined for a relative URI or one with a fragment (RFC 8707 section 2).
 */
export function normalizeResource(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if (uri.includes('#')) return undefined;
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}${url.search}`;
}

/** Returns every resource this server issues tokens for, normalized: the API, this host, and configured ones. */
export function knownResources(config: Config): string[] {
  const all = [apiResource(config), config.issuer, ...config.extraResources];
  return all.map((uri) => normalizeResource(uri)).filter((uri): uri is string => uri !== undefined);
}

/**
 * Resolves an RFC 8707 `resource` parameter to a resource this server issues
 * tokens for. Absent means the demo API. Throws invalid_target for any other.
 */
export function resolveResource(config: Config, resource: string | undefined): string {
  if (resource === undefined) return normalizeResource(apiResource(config)) as string;

  const normalized = normalizeResource(resource);
  if (normalized !== undefined && knownResources(config).includes(normalized)) return normalized;
  throw new OAuthError('invalid_target', `The resource ${resource} is not served by this authorization server`);
}

/**
 * Checks a token request's `resource` against the one the authorization was
 * bound to. Absent is fine; any other resource is invalid_target, because a
 * grant never widens to another audience.
 */
export function checkBoundResource(config: Config, resource: string | undefined, bound: string): void {
  if (resource === undefined) return;
  if (resolveResource(config, resource) !== bound) {
    throw new OAuthError('invalid_target', `The resource ${resource} was not part of this authorization`);
  }
}
