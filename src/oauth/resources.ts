import type { Config } from '../config.ts';
import { apiResource } from './context.ts';
import { OAuthError } from './errors.ts';

/**
 * Resolves an RFC 8707 `resource` parameter to a resource this server issues
 * tokens for. Absent means the demo API. A trailing slash is ignored, so
 * `https://host/api/v1/` names the same resource as `https://host/api/v1`.
 */
export function resolveResource(config: Config, resource: string | undefined): string {
  const api = apiResource(config);
  if (resource === undefined) return api;

  if (resource.replace(/\/+$/, '') === api) return api;
  throw new OAuthError('invalid_target', `The resource ${resource} is not served by this authorization server`);
}
