import { parseArgs } from 'node:util';
import {
  credentialsPath,
  deleteCredentials,
  loadCredentials,
  type Credentials,
} from './credentials.ts';
import { CliError, UsageError } from './errors.ts';
import { revokeToken } from './tokens.ts';

export const LOGOUT_HELP = `Usage: speedgate-cli logout

Signs out: revokes the stored refresh token at the server's revocation
endpoint (RFC 7009), which also ends the access tokens issued with it, then
deletes the credentials file. When the server cannot be reached or rejects
the request, the file is deleted anyway, the command exits with status 1, and
the token may remain valid until it expires: revoke the authorization at
SERVER/accounts/applications/ to end it.

The CLI does not store personal access tokens. Revoke those at
SERVER/accounts/tokens/.

Options:
  -h, --help   Print this help.`;

function parseLogoutArgs(args: string[]) {
  try {
    return parseArgs({
      args,
      options: { help: { type: 'boolean', short: 'h', default: false } },
    }).values;
  } catch (error) {
    const hint = 'Run speedgate-cli logout --help for the options.';
    throw new UsageError(`${(error as Error).message}. ${hint}`);
  }
}

/** Reads the credentials, deleting the file when it cannot be read as credentials. */
function loadOrDeleteCredentials(): Credentials | undefined {
  try {
    return loadCredentials();
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    const file = deleteCredentials();
    throw new CliError(`Deleted ${file} without revoking a token, because it was unreadable.`);
  }
}

/** Revokes the stored tokens' authorization and returns the error when that fails. */
async function revokeStored(credentials: Credentials): Promise<unknown> {
  const { server, client_id, refresh_token, access_token } = credentials;
  try {
    // Without a refresh token, revoking the access token ends the same authorization.
    if (refresh_token === undefined) {
      await revokeToken(server, client_id, access_token, 'access_token');
    } else {
      await revokeToken(server, client_id, refresh_token, 'refresh_token');
    }
    return undefined;
  } catch (error) {
    return error;
  }
}

/** Runs `logout`: revokes the stored tokens at the server and deletes the credentials file. */
export async function runLogout(args: string[]): Promise<void> {
  const values = parseLogoutArgs(args);
  if (values.help) {
    console.log(LOGOUT_HELP);
    return;
  }

  const credentials = loadOrDeleteCredentials();
  if (credentials === undefined) {
    console.log(`Not signed in: there is no ${credentialsPath()}. Nothing to do.`);
    return;
  }

  const failure = await revokeStored(credentials);
  const file = deleteCredentials();
  if (failure === undefined) {
    console.log(`Signed out of ${credentials.server}. Revoked the tokens and deleted ${file}.`);
    return;
  }
  if (!(failure instanceof CliError)) throw failure;

  const { server } = credentials;
  throw new CliError(
    `Deleted ${file}, but could not revoke the tokens at ${server}: ${failure.message}. ` +
      'The tokens may still be valid until they expire. ' +
      `To end it now, revoke the authorization at ${server}/accounts/applications/.`,
  );
}
