import { parseArgs } from 'node:util';
import { loadCredentials } from './credentials.ts';
import { CliError, UsageError } from './errors.ts';
import { PersonalAccessTokenSource, parsePersonalAccessToken } from './personal-access-token.ts';
import { parseServerUrl, serverFromSettings } from './server-url.ts';
import { StoredTokenSource, type TokenSource } from './token-source.ts';

/** The options that `me`, `teams` and `products` share, as `--help` lists them. */
export const API_OPTIONS_HELP = `Options:
  --json          Print the API's JSON response instead.
  --token TOKEN   Personal access token (spd_...) to send instead of the
                  stored sign-in. Default: $SPEEDGATE_TOKEN. Prefer the
                  variable: other users of this machine can see the command
                  line of a running process.
  --server URL    Server that the personal access token is for.
                  Default: $SPEEDGATE_SERVER. Without a token, the server
                  that login used.
  -h, --help      Print this help.`;

export interface ApiCommandValues {
  json: boolean;
  help: boolean;
  token?: string;
  server?: string;
}

/** Parses the options of an API command, `name` being the command for the usage hint. */
export function parseApiArgs(name: string, args: string[]): ApiCommandValues {
  try {
    return parseArgs({
      args,
      options: {
        json: { type: 'boolean', default: false },
        token: { type: 'string' },
        server: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (error) {
    const hint = `Run speedgate-cli ${name} --help for the options.`;
    throw new UsageError(`${(error as Error).message}. ${hint}`);
  }
}

function storedTokenSource(serverOption: string | undefined, env: NodeJS.ProcessEnv): TokenSource {
  const credentials = loadCredentials(env);
  if (credentials === undefined) {
    const pat = 'or give a personal access token with --token or SPEEDGATE_TOKEN';
    throw new CliError(`Not signed in. Run speedgate-cli login first, ${pat}.`);
  }

  // SPEEDGATE_SERVER is ignored here, because a shell may set it for login,
  // which stored the server.
  if (serverOption !== undefined) {
    const server = parseServerUrl(serverOption.trim(), '--server');
    if (server !== credentials.server) {
      const advice = `Run speedgate-cli login --server ${server}, or give a personal access token.`;
      const stored = credentials.server;
      throw new CliError(`The stored sign-in is for ${stored}, not ${server}. ${advice}`);
    }
  }
  return new StoredTokenSource(credentials);
}

/**
 * Returns the token source for an API command. A personal access token from
 * `--token`, or else from a non-empty SPEEDGATE_TOKEN, is used with the
 * server from `--server` or SPEEDGATE_SERVER. Without one, the command uses
 * the tokens that login stored.
 */
export function chooseTokenSource(
  values: ApiCommandValues,
  env: NodeJS.ProcessEnv = process.env,
): TokenSource {
  const fromEnv = env.SPEEDGATE_TOKEN === '' ? undefined : env.SPEEDGATE_TOKEN;
  const raw = values.token ?? fromEnv;
  if (raw === undefined) return storedTokenSource(values.server, env);

  const source = values.token === undefined ? 'SPEEDGATE_TOKEN' : '--token';
  const token = parsePersonalAccessToken(raw, source);
  return new PersonalAccessTokenSource(serverFromSettings(values.server, env), token);
}
