import { createHash } from 'node:crypto';
import { constantTimeEqual } from './secrets.ts';

/** RFC 7636 section 4.1: 43 to 128 unreserved characters. A S256 challenge has the same form. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

export function isWellFormedPkceValue(value: string): boolean {
  return VERIFIER.test(value);
}

/** Computes the S256 `code_challenge` of a `code_verifier` (RFC 7636 section 4.2). */
export function codeChallengeOf(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/** Checks a `code_verifier` against a stored S256 `code_challenge` (RFC 7636 section 4.6). */
export function verifyCodeChallenge(verifier: string, challenge: string): boolean {
  if (!VERIFIER.test(verifier)) return false;
  return constantTimeEqual(codeChallengeOf(verifier), challenge);
}
