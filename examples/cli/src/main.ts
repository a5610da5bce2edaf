import { CliError, UsageError, printable, redactTokens } from './errors.ts';
import { LOGIN_HELP, runLogin } from './login-command.ts';
import { LOGOUT_HELP, runLogout } from './logout-command.ts';
import { ME_HELP, runMe } from './me-command.ts';
import { PRODUCTS_HELP, runProducts } from './products-command.ts';
import { TEAMS_HELP, runTeams } from './teams-command.ts';

const HELP = `Usage: speedgate-cli COMMAND [options]

A command-line client for a Speedgate authorization server.

Commands:
  login      Sign in with the device flow and store the tokens
  me         Print the user's name and email address
  teams      Print the user's teams and their members
  products   Print the product catalogue
  logout     Revoke the stored tokens and delete them
  help       Print this help, or a command's help: speedgate-cli help login

me, teams and products use the tokens that login stored, or a personal access
token given with --token or SPEEDGATE_TOKEN. Run speedgate-cli COMMAND --help
for a command's options.

Environment:
  SPEEDGATE_TOKEN       Personal access token (spd_...) for me, teams and
                        products, in place of the stored sign-in
  SPEEDGATE_SERVER      Default for --server: the server for login, and for
                        a personal access token
  SPEEDGATE_CLIENT_ID   Default for login --client-id
  XDG_CONFIG_HOME       Parent folder of speedgate-cli/credentials.json
                        (default: ~/.config)

Exit status: 0 on success, 1 on failure, 2 on a command-line mistake.`;

interface Command {
  run(args: string[]): Promise<void>;
  help: string;
}

const COMMANDS = new Map<string, Command>([
  ['login', { run: runLogin, help: LOGIN_HELP }],
  ['me', { run: runMe, help: ME_HELP }],
  ['teams', { run: runTeams, help: TEAMS_HELP }],
  ['products', { run: runProducts, help: PRODUCTS_HELP }],
  ['logout', { run: runLogout, help: LOGOUT_HELP }],
]);

/** Runs one command line and returns the exit status. */
async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) {
    console.error(HELP);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(COMMANDS.get(rest[0] ?? '')?.help ?? HELP);
    return 0;
  }

  const command = COMMANDS.get(name);
  if (command === undefined) {
    throw new UsageError(`Unknown command "${name}". Run speedgate-cli --help for the commands.`);
  }
  await command.run(rest);
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof CliError)) throw error;
  console.error(`error: ${printable(redactTokens(error.message))}`);
  process.exitCode = error.exitCode;
}
