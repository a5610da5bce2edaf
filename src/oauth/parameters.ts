import { OAuthError, invalidRequest } from './errors.ts';

/** Maximum length of any OAuth parameter value, in characters. */
export const MAX_PARAMETER_LENGTH = 4096;

export type Parameters = Record<string, string>;

const INVALID_CHARACTERS = /[\uFFFD\u0000-\u001f\u007f]/;
// The same set without CR and LF, which a browser sends as CRLF between the lines of a textarea.
const INVALID_MULTILINE_CHARACTERS = /[\uFFFD\u0000-\u0009\u000b\u000c\u000e-\u001f\u007f]/;

/**
 * Decodes an application/x-www-form-urlencoded body as the WHATWG URL standard
 * does. A repeated name becomes an array, for readParameters to reject. A
 * percent-encoded byte sequence that is not UTF-8, such as `%FF`, decodes to
 * U+FFFD, which readParameters rejects, where `fast-querystring` (the
 * `@fastify/formbody` default) would keep the raw `%FF` text.
 */
export function parseFormBody(body: string): Record<string, string | string[]> {
  const parsed: Record<string, string | string[]> = Object.create(null);
  for (const [name, value] of new URLSearchParams(body)) {
    const previous = parsed[name];
    if (previous === undefined) parsed[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else parsed[name] = [previous, value];
  }
  return parsed;
}

/**
 * Validates a parsed form or JSON body as OAuth parameters: an object of
 * single string values. RFC 6749 section 3.2 forbids repeating a parameter,
 * and an empty value counts as absent. Only the fields named in
 * `multilineFields`, such as a textarea's, may contain CR and LF.
 */
export function readParameters(body: unknown, multilineFields: readonly string[] = []): Parameters {
  if (body === undefined || body === null || body === '') return {};

  if (typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be application/x-www-form-urlencoded parameters');
  }

  const parameters: Parameters = {};
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    if (INVALID_CHARACTERS.test(name)) {
      throw invalidRequest('A parameter name contains invalid UTF-8 or control characters');
    }
    if (Array.isArray(value)) {
      throw invalidRequest(`The parameter ${name} must not be repeated`);
    }
    if (typeof value !== 'string') {
      throw invalidRequest(`The parameter ${name} must be a string`);
    }
    if (value.length > MAX_PARAMETER_LENGTH) {
      throw invalidRequest(`The parameter ${name} is longer than ${MAX_PARAMETER_LENGTH} characters`);
    }
    const invalidCharacters = multilineFields.includes(name) ? INVALID_MULTILINE_CHARACTERS : INVALID_CHARACTERS;
    if (invalidCharacters.test(value)) {
      throw invalidRequest(`The parameter ${name} contains invalid UTF-8 or control characters`);
    }
    if (value !== '') parameters[name] = value;
  }
  return parameters;
}

/** Throws one invalid_request naming every missing parameter at once. */
export function requireParameters(parameters: Parameters, names: readonly string[]): void {
  const missing = names.filter((name) => parameters[name] === undefined);
  if (missing.length === 0) return;

  const list = missing.join(', ');
  throw new OAuthError('invalid_request', `Missing required parameter${missing.length > 1 ? 's' : ''}: ${list}`);
}
