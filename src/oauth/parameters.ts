import { OAuthError, invalidRequest } from './errors.ts';

/** Longest value accepted for any OAuth parameter, in characters. */
export const MAX_PARAMETER_LENGTH = 4096;

export type Parameters = Record<string, string>;

/**
 * Validates a parsed form or JSON body as OAuth parameters: an object of
 * single string values. RFC 6749 section 3.2 forbids repeating a parameter,
 * and an empty value counts as absent.
 */
export function readParameters(body: unknown): Parameters {
  if (body === undefined || body === null || body === '') return {};

  if (typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be application/x-www-form-urlencoded parameters');
  }

  const parameters: Parameters = {};
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    if (Array.isArray(value)) {
      throw invalidRequest(`The parameter ${name} must not be repeated`);
    }
    if (typeof value !== 'string') {
      throw invalidRequest(`The parameter ${name} must be a string`);
    }
    if (value.length > MAX_PARAMETER_LENGTH) {
      throw invalidRequest(`The parameter ${name} is longer than ${MAX_PARAMETER_LENGTH} characters`);
    }
    if (value.includes('\uFFFD') || /[\u0000-\u001f\u007f]/.test(value)) {
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
