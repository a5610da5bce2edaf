/** Error codes from RFC 6749, RFC 6750, RFC 7009, RFC 7591, RFC 8628 and RFC 8707. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_response_type'
  | 'unsupported_token_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'access_denied'
  | 'login_required'
  | 'consent_required'
  | 'authorization_pending'
  | 'slow_down'
  | 'expired_token'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'server_error'
  | 'temporarily_unavailable';

export interface OAuthErrorOptions {
  status?: number;
  /** Why the request failed, for the log only: never sent to the client. */
  detail?: string;
  headers?: Record<string, string>;
}

/**
 * A protocol error with its HTTP status, RFC error code and client-facing
 * description. A status of 500 or above reaches the client as `server_error`
 * with no description, except 503, which is `temporarily_unavailable`.
 */
export class OAuthError extends Error {
  override name = 'OAuthError';
  readonly code: OAuthErrorCode;
  readonly status: number;
  readonly description: string;
  readonly detail: string | undefined;
  readonly headers: Record<string, string>;

  constructor(code: OAuthErrorCode, description: string, options: OAuthErrorOptions = {}) {
    super(`${code}: ${description}`);
    this.code = code;
    this.description = description;
    this.status = options.status ?? (code === 'invalid_client' ? 401 : 400);
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }

  /** Returns the JSON body of an RFC 6749 section 5.2 error response. */
  toJSON(): { error: OAuthErrorCode; error_description?: string } {
    if (this.status === 503) return { error: 'temporarily_unavailable', error_description: this.description };
    if (this.status >= 500) return { error: 'server_error' };
    return { error: this.code, error_description: this.description };
  }
}

export function invalidRequest(description: string, detail?: string): OAuthError {
  return new OAuthError('invalid_request', description, { detail });
}
