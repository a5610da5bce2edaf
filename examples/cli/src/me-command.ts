import { API_OPTIONS_HELP, chooseTokenSource, parseApiArgs } from './api-command.ts';
import { PROFILE_PATH, getJson, parseProfile } from './api.ts';
import { printable } from './errors.ts';

export const ME_HELP = `Usage: speedgate-cli me [--json] [--token TOKEN --server URL]

Prints the name and email address of the signed-in user, from GET
/api/v1/me/ on the server that login used. An expired access token is
refreshed and the new tokens are stored. With a personal access token, prints
the token owner's profile instead. The token needs the read:profile scope.

${API_OPTIONS_HELP}`;

/** Runs `me`: prints the signed-in user's profile. */
export async function runMe(args: string[]): Promise<void> {
  const values = parseApiArgs('me', args);
  if (values.help) {
    console.log(ME_HELP);
    return;
  }

  const body = await getJson(chooseTokenSource(values), PROFILE_PATH);
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return;
  }

  const profile = parseProfile(body);
  console.log(`Name:  ${printable(profile.name)}`);
  console.log(`Email: ${printable(profile.email)}`);
}
