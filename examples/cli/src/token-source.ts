import {
  credentialsFromTokens,
  isExpired,
  saveCredentials,
  type Credentials,
} from './credentials.ts';
import { CliError, LOG_IN_AGAIN, OAuthResponseError } from './errors.ts';
import { refreshTokens } from './tokens.ts';

/**
 * Supplies the bearer token for API requests. Stored OAuth tokens can be
 * refreshed. A personal access token cannot, so its `renew` returns false.
 */
export interface TokenSource {
  /** The server that issued the token, without a trailing slash. */
  readonly server: string;
  accessToken(): Promise<string>;
  /** Replaces a token the API rejected. Returns false when the token cannot be renewed. */
  renew(): Promise<boolean>;
  /** Builds the message for a token that the API rejects with 401, from the server's reason. */
  rejectedMessage(description: string): string;
  /** Builds the message for a token that lacks `scope`, which the API reported with a 403. */
  missingScopeMessage(scope: string): string;
}

/** The tokens that `login` stored, refreshed and stored again when the access token expires. */
export class StoredTokenSource implements TokenSource {
  #credentials: Credentials;
  #refreshed = false;

  constructor(credentials: Credentials) {
    this.#credentials = credentials;
  }

  get server(): string {
    return this.#credentials.server;
  }

  async accessToken(): Promise<string> {
    if (isExpired(this.#credentials)) await this.#refresh();
    return this.#credentials.access_token;
  }

  rejectedMessage(description: string): string {
    return `The server rejected the access token: ${description}. ${LOG_IN_AGAIN}`;
  }

  missingScopeMessage(scope: string): string {
    const granted = this.#credentials.scope?.split(' ').filter((name) => name !== '') ?? [];
    const request = [...new Set([...granted, ...scope.split(' ')])].join(' ');
    const advice = `Run speedgate-cli login --scope "${request}" to request it.`;
    return `The access token lacks the scope ${scope}. ${advice}`;
  }

  async renew(): Promise<boolean> {
    // A token refreshed moments ago and still rejected will not be helped by another refresh.
    if (this.#refreshed) return false;
    await this.#refresh();
    return true;
  }

  async #refresh(): Promise<void> {
    const { server, client_id, refresh_token } = this.#credentials;
    if (refresh_token === undefined) {
      const message = 'The access token has expired and no refresh token is stored.';
      throw new CliError(`${message} ${LOG_IN_AGAIN}`);
    }

    let tokens;
    try {
      tokens = await refreshTokens(server, client_id, refresh_token);
    } catch (error) {
      if (!(error instanceof OAuthResponseError)) throw error;
      throw new CliError(`Could not refresh the access token: ${error.message}. ${LOG_IN_AGAIN}`);
    }

    // The server has rotated the refresh token, so store the new one before anything else can fail.
    this.#credentials = credentialsFromTokens(this.#credentials, tokens);
    saveCredentials(this.#credentials);
    this.#refreshed = true;
  }
}
