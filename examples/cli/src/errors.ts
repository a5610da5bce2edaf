/** The advice that ends every message about a sign-in that can no longer be used. */
export const LOG_IN_AGAIN = 'Run speedgate-cli login to sign in again.';

/** A failure reported to the user as one line on standard error, with the exit status to use. */
export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** A mistake in the command line: exits with status 2. */
export class UsageError extends CliError {
  override name = 'UsageError';

  constructor(message: string) {
    super(message, 2);
  }
}

/** A request that got no HTTP response: refused connection, DNS failure or timeout. */
export class NetworkError extends CliError {
  override name = 'NetworkError';
}

/** An RFC 6749 section 5.2 error from the token or device authorization endpoint. */
export class OAuthResponseError extends CliError {
  override name = 'OAuthResponseError';
  readonly code: string;
  readonly description: string | undefined;

  constructor(code: string, description: string | undefined) {
    super(description === undefined ? `The server returned ${code}` : `${description} (${code})`);
    this.code = code;
    this.description = description;
  }
}

/**
 * Removes control characters from text the server sent, so a hostile server
 * cannot move the cursor or rewrite earlier lines of the terminal.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
}

/** Pattern of a personal access token inside a text, from its prefix to its last character. */
const PERSONAL_ACCESS_TOKEN = /spd_[0-9A-Za-z]*/g;

/**
 * Replaces every personal access token in `text` with `spd_…`, so an error
 * that repeats a command-line argument never shows the token.
 */
export function redactTokens(text: string): string {
  return text.replace(PERSONAL_ACCESS_TOKEN, 'spd_…');
}
