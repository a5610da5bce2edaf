import { parseArgs } from 'node:util';
import { GRANT_TYPES, registerClient, type TokenEndpointAuthMethod } from '../oauth/clients.ts';
import { OAuthError } from '../oauth/errors.ts';
import { ScopeRegistry } from '../oauth/scopes.ts';
import { UsageError, runCommand } from './common.ts';

const HELP = `Usage: create-oauth2-app NAME [options]

Registers an OAuth application and prints its client_id. Each run creates a
new application, even with a name already in use.

Options:
  --grant-type TYPE     Allow a grant type; repeat for several. One of
                        device_code, authorization_code, refresh_token,
                        client_credentials, token_exchange. Default:
                        device_code and refresh_token.
  --redirect-uri URI    Allow a redirect URI for authorization_code; repeat
                        for several. https, http on a loopback address, or a
                        private-use scheme such as com.example.app:/callback.
  --scope SCOPE         Allow a scope; repeat, or separate with spaces or
                        commas. Default: every scope except admin.
  --confidential        Create a confidential client with a client secret,
                        printed once. Default: a public client.
  --auth-method METHOD  How a confidential client sends its secret:
                        client_secret_basic (default) or client_secret_post.
  --resource URL        The protected resource this confidential client
                        operates, such as an MCP server's URL: with the
                        token_exchange grant it may exchange tokens issued
                        for that resource for API tokens (RFC 8693).
  --no-pkce             Let this confidential client skip PKCE, for a
                        platform that cannot send code_challenge. Public
                        clients always need PKCE.
  --json                Print the result as one JSON object.
  -h, --help            Print this help.

Environment: DATABASE_URL, or DATA_DIR for the embedded database, as for the
server. With the embedded database, stop the server first.`;

const SHORT_GRANT_NAMES: Record<string, string> = {
  device_code: GRANT_TYPES.deviceCode,
  authorization_code: GRANT_TYPES.authorizationCode,
  refresh_token: GRANT_TYPES.refreshToken,
  client_credentials: GRANT_TYPES.clientCredentials,
  token_exchange: GRANT_TYPES.tokenExchange,
};

function readAuthMethod(confidential: boolean, method: string | undefined): TokenEndpointAuthMethod {
  if (method === undefined) return confidential ? 'client_secret_basic' : 'none';
  if (!confidential) throw new UsageError('--auth-method needs --confidential');
  if (method !== 'client_secret_basic' && method !== 'client_secret_post') {
    throw new UsageError(`Unknown --auth-method "${method}"; use client_secret_basic or client_secret_post`);
  }
  return method;
}

function parseCommandLine() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        'grant-type': { type: 'string', multiple: true },
        'redirect-uri': { type: 'string', multiple: true },
        scope: { type: 'string', multiple: true },
        confidential: { type: 'boolean', default: false },
        'auth-method': { type: 'string' },
        'no-pkce': { type: 'boolean', default: false },
        resource: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}. Run create-oauth2-app --help for the options.`);
  }
}

const { values, positionals } = parseCommandLine();

if (values.help) {
  console.log(HELP);
} else {
  await runCommand(async (db, config) => {
    if (positionals.length !== 1) {
      throw new UsageError('Give the application name as one argument, such as create-oauth2-app "My MCP Server"');
    }

    const grantTypes = values['grant-type']?.map((name) => {
      const grantType = SHORT_GRANT_NAMES[name] ?? name;
      if (!Object.values(GRANT_TYPES).includes(grantType as never)) {
        throw new UsageError(`Unknown grant type "${name}"; use one of ${Object.keys(SHORT_GRANT_NAMES).join(', ')}`);
      }
      return grantType;
    });
    const scopes = values.scope?.flatMap((entry) => entry.split(/[\s,]+/)).filter((name) => name !== '');

    try {
      const { client, clientSecret } = await registerClient(
        db,
        new ScopeRegistry(config.extraScopes),
        {
          name: positionals[0],
          grantTypes,
          redirectUris: values['redirect-uri'],
          scopes,
          confidential: values.confidential,
          tokenEndpointAuthMethod: readAuthMethod(values.confidential, values['auth-method']),
          requirePkce: !values['no-pkce'],
          metadata: values.resource === undefined ? undefined : { resource: values.resource },
          registrationType: 'operator',
        },
        config.now(),
      );

      if (values.json) {
        console.log(JSON.stringify({ client_id: client.id, client_secret: clientSecret, client_name: client.name, grant_types: client.grant_types, redirect_uris: client.redirect_uris, scope: client.scopes.join(' ') }));
        return;
      }
      console.log(`client_id: ${client.id}`);
      if (clientSecret !== undefined) {
        console.log(`client_secret: ${clientSecret}`);
        console.error('The client secret is shown only now. Store it in a secret manager.');
      }
    } catch (error) {
      if (error instanceof OAuthError) throw new UsageError(error.description);
      throw error;
    }
  });
}
