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

/** Sends a request and parses the JSON body of the response, whatever its status. */
export async function requestJson(url: string, init: JsonRequest = {}): Promise<JsonResponse> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, {
      ...init,
      headers: { accept: 'application/json', 'user-agent': USER_AGENT, ...init.headers },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    text = await response.text();
  } catch (error) {
    throw new NetworkError(describeFetchFailure(url, error));
  }

  try {
    return { status: response.status, body: JSON.parse(text) };
  } catch {
    throw new CliError(`The server returned HTTP ${response.status} without a JSON body from ${url}`);
  }
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

  const result = asObject(body);
  if (status === 200) return result;

  if (typeof result.error === 'string') {
    const description =
      typeof result.error_description === 'string' ? result.error_description : undefined;
    throw new OAuthResponseError(result.error, description);
  }
  throw new CliError(`The server returned HTTP ${status} from ${url}`);
}
