import type { FastifyInstance } from 'fastify';
import { GRANT_TYPES } from '../oauth/clients.ts';
import { apiResource } from '../oauth/context.ts';

/** RFC 8414 authorization server metadata, RFC 9728 resource metadata and the JWKS. */
export default async function metadataRoutes(app: FastifyInstance): Promise<void> {
  const { config, scopes, keys } = app.speedgate;
  const issuer = config.issuer;

  const serverMetadata = {
    issuer,
    authorization_endpoint: `${issuer}/o/authorize/`,
    token_endpoint: `${issuer}/o/token/`,
    device_authorization_endpoint: `${issuer}/o/device-authorization/`,
    revocation_endpoint: `${issuer}/o/revoke_token/`,
    introspection_endpoint: `${issuer}/o/introspect/`,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    scopes_supported: scopes.grantableNames(),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: Object.values(GRANT_TYPES),
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
    client_id_metadata_document_supported: true,
    ...(config.dcrEnabled ? { registration_endpoint: `${issuer}/o/register/` } : {}),
    service_documentation: `${issuer}/`,
  };

  const resourceMetadata = {
    resource: apiResource(config),
    authorization_servers: [issuer],
    scopes_supported: scopes.grantableNames(),
    bearer_methods_supported: ['header'],
    resource_name: 'Speedgate demo API',
  };

  app.get('/.well-known/oauth-authorization-server', async (_request, reply) => {
    return reply.header('cache-control', 'public, max-age=3600').send(serverMetadata);
  });

  // RFC 9728 section 3.1: a client may insert the resource's path after the well-known name.
  for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/api/v1', '/.well-known/oauth-protected-resource/api/v1/*']) {
    app.get(path, async (_request, reply) => {
      return reply.header('cache-control', 'public, max-age=3600').send(resourceMetadata);
    });
  }

  app.get('/.well-known/jwks.json', async (_request, reply) => {
    return reply.header('cache-control', 'public, max-age=300').send(keys.jwks());
  });
}
