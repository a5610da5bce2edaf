import { CliError, UsageError, printable } from './errors.ts';
import { LOGIN_HELP, runLogin } from './login-command.ts';
import { ME_HELP, runMe } from './me-command.ts';

const HELP = `Usage: speedgate-cli COMMAND [options]

A command-line client for a Speedgate authorization server.

Commands:
  login   Sign in with the device flow and store the tokens
  me      Print the signed-in user's name and email address
  help    Print this help, or a command's help: speedgate-cli help login

Run speedgate-cli COMMAND --help for a command's options.

Environment:
  SPEEDGATE_SERVER      Default for login --server
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
  console.error(`error: ${printable(error.message)}`);
  process.exitCode = error.exitCode;
}
