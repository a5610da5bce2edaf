import { parseArgs } from 'node:util';
import { PROFILE_PATH, getJson, parseProfile } from './api.ts';
import { loadCredentials } from './credentials.ts';
import { CliError, UsageError, printable } from './errors.ts';
import { StoredTokenSource, type TokenSource } from './token-source.ts';

export const ME_HELP = `Usage: speedgate-cli me [--json]

Prints the name and email address of the signed-in user, from GET
/api/v1/me/ on the server that login used. An expired access token is
refreshed and the new tokens are stored. The token needs the read:profile
scope.

Options:
  --json       Print the API's JSON response instead.
  -h, --help   Print this help.`;

function parseMeArgs(args: string[]) {
  try {
    return parseArgs({
      args,
      options: {
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (error) {
    const hint = 'Run speedgate-cli me --help for the options.';
    throw new UsageError(`${(error as Error).message}. ${hint}`);
  }
}

// NOTE: a later personal-access-token mode (--token or SPEEDGATE_TOKEN) would
// return a TokenSource here whose renew() returns false.
function chooseTokenSource(): TokenSource {
  const credentials = loadCredentials();
  if (credentials === undefined) {
    throw new CliError('Not signed in. Run speedgate-cli login first.');
  }
  return new StoredTokenSource(credentials);
}

/** Runs `me`: prints the signed-in user's profile. */
export async function runMe(args: string[]): Promise<void> {
  const values = parseMeArgs(args);
  if (values.help) {
    console.log(ME_HELP);
    return;
  }

  const body = await getJson(chooseTokenSource(), PROFILE_PATH);
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return;
  }

  const profile = parseProfile(body);
  console.log(`Name:  ${printable(profile.name)}`);
  console.log(`Email: ${printable(profile.email)}`);
}
