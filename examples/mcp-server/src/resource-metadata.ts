import type { HttpSettings } from './settings.ts';
import { TOOL_SCOPES } from './tools.ts';

const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/**
 * Returns the paths that serve the metadata: RFC 9728 section 3.1 inserts
 * the resource's path after the well-known name, and the bare name serves
 * clients that look at the host's root.
 */
export function metadataPaths(settings: HttpSettings): string[] {
  const mcpPath = settings.mcpPath === '/' ? '' : settings.mcpPath;
  return mcpPath === '' ? [WELL_KNOWN] : [`${WELL_KNOWN}${mcpPath}`, WELL_KNOWN];
}

/** Returns the metadata URL that 401 and 403 challenges name in `resource_metadata`. */
export function metadataUrl(settings: HttpSettings): string {
  return `${new URL(settings.resource).origin}${metadataPaths(settings)[0]}`;
}

/** Builds the RFC 9728 protected resource metadata of this MCP server. */
export function protectedResourceMetadata(settings: HttpSettings): Record<string, unknown> {
  return {
    resource: settings.resource,
    authorization_servers: [settings.speedgateUrl],
    scopes_supported: TOOL_SCOPES,
    bearer_methods_supported: ['header'],
    resource_name: 'Speedgate MCP server',
  };
}
