/** Timeout of one request to Speedgate, in milliseconds, including reading the body. */
export const REQUEST_TIMEOUT_MS = 15_000;

/** A failed call to the Speedgate API: an error status, or no response at all (status 0). */
export class ApiError extends Error {
  override name = 'ApiError';

  constructor(
    readonly status: number,
    /** The `error` field of the response body, such as `insufficient_scope`. */
    readonly code: string | undefined,
    message: string,
    /** The scope a 403 insufficient_scope response names. */
    readonly scope?: string,
  ) {
    super(message);
  }
}

function readField(body: unknown, name: string): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const value = (body as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function send(url: string, token: string): Promise<Response> {
  try {
    return await fetch(url, {
      headers: { accept: 'application/json', authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message ?? (error as Error).message;
    throw new ApiError(0, undefined, `Could not reach ${url}: ${cause}`);
  }
}

/**
 * Sends `GET apiBase + path` with a bearer token and returns the parsed JSON
 * body of a 200 response. Throws ApiError for any other status, with the
 * RFC 6750 `error`, `error_description` and `scope` of the body.
 */
export async function getApiJson(speedgateUrl: string, path: string, token: string): Promise<unknown> {
  const url = `${speedgateUrl}${path}`;
  const response = await send(url, token);
  const body = parseJson(await response.text());
  if (response.status === 200 && body !== undefined) return body;

  const code = readField(body, 'error');
  const description = readField(body, 'error_description') ?? `HTTP ${response.status} from ${url}`;
  throw new ApiError(response.status, code, description, readField(body, 'scope'));
}
