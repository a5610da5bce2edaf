import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Returns `bytes` random bytes encoded as base64url. */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** SHA-256 of a high-entropy secret, hex-encoded: how opaque tokens and client secrets are stored. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/**
 * Compares two strings in time that depends only on the longer length.
 * Both are padded to one length first, so a short guess leaks nothing.
 */
export function constantTimeEqual(actual: string, expected: string): boolean {
  // UTF-16 code units, not UTF-8: UTF-8 encodes every lone surrogate as U+FFFD,
  // which would make strings such as "\ud800" and "\ufffd" compare equal.
  const left = Buffer.from(actual, 'utf16le');
  const right = Buffer.from(expected, 'utf16le');
  const length = Math.max(left.length, right.length, 1);

  const paddedLeft = Buffer.alloc(length);
  const paddedRight = Buffer.alloc(length);
  left.copy(paddedLeft);
  right.copy(paddedRight);

  return timingSafeEqual(paddedLeft, paddedRight) && left.length === right.length;
}
