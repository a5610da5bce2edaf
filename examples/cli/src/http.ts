import { CliError, NetworkError, OAuthResponseError } from './errors.ts';

/** Timeout of one HTTP request, in milliseconds, including reading the body. */
const REQUEST_TIMEOUT_MS = 30_000;

/** User-Agent header of every request, which the server shows on the device approval page. */
export const USER_AGENT = `speedgate-cli (Node.js ${process.version}; ${process.platform})`;

export interface JsonRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

export interface JsonResponse {
  status: number;
  body: unknown;
}

function describeFetchFailure(url: string, error: unknown): string {
  if (error instanceof DOMException && error.name === 'TimeoutError') {
    return `No response from ${url} within ${REQUEST_TIMEOUT_MS / 1000} seconds`;
  }
  // Node's fetch reports the socket error (ECONNREFUSED, ENOTFOUND) as the cause.
  const cause = (error as { cause?: { message?: string } }).cause?.message;
  return `Could not reach ${url}: ${cause ?? (error as Error).message}`;
}

/** Returns a parsed JSON body as an object, or an empty object for any other JSON value. */
export function asObject(body: unknown): Record<string, unknown> {
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
}

/** A response as the server sent it: the status and the body as text. */
export interface TextResponse {
  status: number;
  text: string;
}

/** Sends a request and returns the response's status and body, whatever the status. */
export async function requestText(url: string, init: JsonRequest = {}): Promise<TextResponse> {
  try {
    const response = await fetch(url, {
      ...init,
      headers: { accept: 'application/json', 'user-agent': USER_AGENT, ...init.headers },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    return { status: response.status, text: await response.text() };
  } catch (error) {
    throw new NetworkError(describeFetchFailure(url, error));
  }
}

/** Sends a request and parses the JSON body of the response, whatever its status. */
export async function requestJson(url: string, init: JsonRequest = {}): Promise<JsonResponse> {
  const { status, text } = await requestText(url, init);
  try {
    return { status, body: JSON.parse(text) };
  } catch {
    throw new CliError(`The server returned HTTP ${status} without a JSON body from ${url}`);
  }
}

/** Sends form-encoded fields in a POST and returns the response's status and body. */
export async function postForm(url: string, fields: Record<string, string>): Promise<TextResponse> {
  return requestText(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

/**
 * Converts a failed OAuth response into an error: OAuthResponseError for an
 * RFC 6749 section 5.2 error body, a CliError naming the status otherwise.
 */
export function oauthFailure(url: string, status: number, body: unknown): CliError {
  const result = asObject(body);
  if (typeof result.error !== 'string') {
    return new CliError(`The server returned HTTP ${status} from ${url}`);
  }

  const description =
    typeof result.error_description === 'string' ? result.error_description : undefined;
  return new OAuthResponseError(result.error, description);
}

/**
 * Posts form-encoded OAuth parameters and returns the JSON body of a 200
 * response. Throws OAuthResponseError for an RFC 6749 section 5.2 error body.
 */
export async function postOAuthForm(
  url: string,
  fields: Record<string, string>,
): Promise<Record<string, unknown>> {
  const { status, body } = await requestJson(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });

  if (status === 200) return asObject(body);
  throw oauthFailure(url, status, body);
}
