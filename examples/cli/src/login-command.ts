import { parseArgs } from 'node:util';
import { credentialsFromTokens, saveCredentials } from './credentials.ts';
import { pollForTokens, printInstructions, requestDeviceAuthorization } from './device-login.ts';
import { UsageError, printable } from './errors.ts';
import { renderLinkQrCode } from './qr-code.ts';
import { serverFromSettings } from './server-url.ts';

export const LOGIN_HELP = `Usage: speedgate-cli login [--server URL] [--client-id ID] [--scope SCOPES] [--qr | --no-qr]

Signs in with the OAuth device authorization grant (RFC 8628): prints a page
and a code to enter there, with a link and a QR code that fill in the code.
Waits until you approve in the browser, then stores the tokens in
$XDG_CONFIG_HOME/speedgate-cli/credentials.json (by default
~/.config/speedgate-cli/credentials.json), readable by you only.

Options:
  --server URL       Speedgate server, such as https://auth.example.com.
                     Default: $SPEEDGATE_SERVER.
  --client-id ID     client_id of a public OAuth application allowed the
                     device_code grant. Default: $SPEEDGATE_CLIENT_ID.
  --scope SCOPES     Scopes to request, separated by spaces, such as
                     "read:profile read:teams". Default: every scope the
                     application may request. The me command needs
                     read:profile.
  --qr, --no-qr      Print, or do not print, the QR code of the link. Default:
                     print it when standard output is a terminal. On a
                     terminal it is drawn black on white with ANSI colours,
                     unless NO_COLOR is set. Elsewhere it is plain text in
                     which a block is a dark module.
  -h, --help         Print this help.`;

function parseLoginArgs(args: string[]) {
  try {
    return parseArgs({
      args,
      options: {
        server: { type: 'string' },
        'client-id': { type: 'string' },
        scope: { type: 'string' },
        qr: { type: 'boolean' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      allowNegative: true,
    }).values;
  } catch (error) {
    const hint = 'Run speedgate-cli login --help for the options.';
    throw new UsageError(`${(error as Error).message}. ${hint}`);
  }
}

function requireSetting(value: string | undefined, option: string, variable: string): string {
  if (value === undefined || value.trim() === '') {
    throw new UsageError(`Missing ${option}. Give it as an option or set ${variable}.`);
  }
  return value.trim();
}

/** Runs `login`: the device flow, then stores the tokens. */
export async function runLogin(args: string[]): Promise<void> {
  const values = parseLoginArgs(args);
  if (values.help) {
    console.log(LOGIN_HELP);
    return;
  }

  const { env } = process;
  const server = serverFromSettings(values.server, env);
  const rawClientId = values['client-id'] ?? env.SPEEDGATE_CLIENT_ID;
  const clientId = requireSetting(rawClientId, '--client-id', 'SPEEDGATE_CLIENT_ID');
  const scopes = values.scope?.split(/\s+/).filter((name) => name !== '') ?? [];
  const scope = scopes.length > 0 ? scopes.join(' ') : undefined;

  const authorization = await requestDeviceAuthorization(server, clientId, scope);
  const qrCode = await renderLinkQrCode(authorization.verificationUriComplete, values.qr);
  printInstructions(authorization, qrCode);
  const tokens = await pollForTokens(server, clientId, authorization);

  const file = saveCredentials(credentialsFromTokens({ server, client_id: clientId }, tokens));
  const granted = tokens.scope === undefined ? '' : ` with scope "${printable(tokens.scope)}"`;
  console.log(`Signed in to ${server}${granted}. Tokens saved to ${file}`);
}
