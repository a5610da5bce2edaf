import { createHmac } from 'node:crypto';
import { constantTimeEqual } from '../oauth/secrets.ts';

/**
 * Derives the CSRF token for a browser: an HMAC of the value that binds it,
 * the session id once logged in or a random cookie before. A token from one
 * browser is useless in another, and nothing is stored.
 */
export function createCsrfToken(secret: string, binding: string): string {
  return createHmac('sha256', secret).update(`csrf:${binding}`).digest('base64url');
}

export function verifyCsrfToken(secret: string, binding: string, token: string | undefined): boolean {
  if (token === undefined || token === '') return false;
  return constantTimeEqual(token, createCsrfToken(secret, binding));
}
