import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { AccountError, createUser } from '../accounts/users.ts';
import { UsageError, runCommand } from './common.ts';

const HELP = `Usage: create-user EMAIL [--admin] [--name NAME] < password-file

Creates a user account. The password is read from standard input: the first
line when piped, or a hidden prompt in a terminal.

Options:
  --admin          Make the user an administrator.
  --name NAME      Display name. Default: the part of EMAIL before the @.
  -h, --help       Print this help.

Environment: DATABASE_URL, or DATA_DIR for the embedded database, as for the
server. With the embedded database, stop the server first.`;

async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    let input = '';
    for await (const chunk of process.stdin) input += chunk;
    return input.split(/\r?\n/)[0];
  }

  // In a terminal, hide what is typed: print the prompt once, then nothing.
  process.stderr.write('Password: ');
  const terminal = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  (terminal as unknown as { _writeToOutput: () => void })._writeToOutput = () => {};
  const password = await new Promise<string>((resolve) => terminal.question('', resolve));
  terminal.close();
  process.stderr.write('\n');
  return password;
}

function parseCommandLine() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        admin: { type: 'boolean', default: false },
        name: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}. Run create-user --help for the options.`);
  }
}

const { values, positionals } = parseCommandLine();

if (values.help) {
  console.log(HELP);
} else {
  await runCommand(async (db, config) => {
    if (positionals.length !== 1) throw new UsageError('Give the email address as one argument, such as create-user ada@example.com');

    const password = await readPassword();
    try {
      const user = await createUser(db, { email: positionals[0], password, name: values.name, isAdmin: values.admin }, config.now());
      console.log(`Created ${user.is_admin ? 'administrator' : 'user'} ${user.email} (id ${user.id})`);
    } catch (error) {
      if (error instanceof AccountError) throw new UsageError(error.message);
      throw error;
    }
  });
}
