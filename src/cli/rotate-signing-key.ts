import { parseArgs } from 'node:util';
import { rotateSigningKey } from '../oauth/keys.ts';
import { UsageError, runCommand } from './common.ts';

const HELP = `Usage: rotate-signing-key

Adds a new signing key and retires the current one. Every server node signs
new access tokens with the new key within a minute; the retired key stays in
the JWKS at /.well-known/jwks.json until the tokens it signed have expired
(ACCESS_TOKEN_TTL), and the purge deletes it a day after that.

Options:
  -h, --help   Print this help.

Environment: DATABASE_URL, or DATA_DIR for the embedded database, as for the
server. With the embedded database, stop the server first.`;

function parseCommandLine() {
  try {
    return parseArgs({ options: { help: { type: 'boolean', short: 'h', default: false } } });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}. Run rotate-signing-key --help for the options.`);
  }
}

const { values } = parseCommandLine();

if (values.help) {
  console.log(HELP);
} else {
  await runCommand(async (db, config) => {
    const kid = await rotateSigningKey(db, config.now());
    console.log(`New signing key ${kid} is active; the previous key is retired.`);
  });
}
