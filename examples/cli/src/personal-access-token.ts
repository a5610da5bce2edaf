import { UsageError } from './errors.ts';
import type { TokenSource } from './token-source.ts';

/** The prefix of every Speedgate personal access token. */
export const PAT_PREFIX = 'spd_';

/** A Speedgate token contains the prefix, then base62 characters only. */
const PAT_CHARACTERS = /^spd_[0-9A-Za-z]+$/;

/**
 * Checks the shape of a personal access token from `source` (`--token` or
 * SPEEDGATE_TOKEN) and returns it without surrounding whitespace. The
 * messages never repeat the token. The server checks the checksum and whether
 * the token is active, so a mistyped token reaches it and gets a 401.
 */
export function parsePersonalAccessToken(raw: string, source: string): string {
  const token = raw.trim();
  if (!token.startsWith(PAT_PREFIX)) {
    throw new UsageError(
      `The value of ${source} is not a personal access token, because it does not start with ` +
        `${PAT_PREFIX}. To use OAuth tokens instead, run speedgate-cli login.`,
    );
  }
  if (!PAT_CHARACTERS.test(token)) {
    throw new UsageError(
      `The value of ${source} contains characters that a personal access token never has. ` +
        'Copy the token again.',
    );
  }
  return token;
}

/** A personal access token from `--token` or SPEEDGATE_TOKEN, used as it is and never refreshed. */
export class PersonalAccessTokenSource implements TokenSource {
  readonly server: string;
  readonly #token: string;

  constructor(server: string, token: string) {
    this.server = server;
    this.#token = token;
  }

  async accessToken(): Promise<string> {
    return this.#token;
  }

  async renew(): Promise<boolean> {
    return false;
  }

  // The server's description is left out, because a 401 for a personal access
  // token has only these three causes, and the advice covers each of them.
  rejectedMessage(): string {
    const advice = `Create a new one at ${this.server}/accounts/tokens/`;
    return `The personal access token is invalid, expired or revoked. ${advice}.`;
  }

  missingScopeMessage(scope: string): string {
    const advice = `Create a token with ${scope} at ${this.server}/accounts/tokens/`;
    return `The personal access token lacks the scope ${scope}. ${advice}.`;
  }
}
