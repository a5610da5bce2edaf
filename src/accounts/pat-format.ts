import { randomInt } from 'node:crypto';
import { crc32 } from 'node:zlib';

export const PAT_PREFIX = 'spd_';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** 30 base62 characters carry 178 random bits (30 × log2 62). */
const RANDOM_LENGTH = 30;

/** A CRC32 is below 62^6, so six base62 characters always hold it. */
const CHECKSUM_LENGTH = 6;

export const PAT_LENGTH = PAT_PREFIX.length + RANDOM_LENGTH + CHECKSUM_LENGTH;

const PAT_SHAPE = new RegExp(`^${PAT_PREFIX}[0-9A-Za-z]{${RANDOM_LENGTH + CHECKSUM_LENGTH}}$`);

function encodeChecksum(body: string): string {
  let value = crc32(body);
  let encoded = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    encoded = BASE62[value % 62] + encoded;
    value = Math.floor(value / 62);
  }
  return encoded;
}

/** Generates a new personal access token: `spd_`, 30 random base62 characters and a CRC32 checksum. */
export function generatePat(): string {
  let body = '';
  for (let i = 0; i < RANDOM_LENGTH; i++) body += BASE62[randomInt(62)];
  return `${PAT_PREFIX}${body}${encodeChecksum(body)}`;
}

/**
 * Checks a token's shape and checksum without a database read, so a mistyped
 * or truncated token is rejected at once.
 */
export function isWellFormedPat(token: string): boolean {
  if (!PAT_SHAPE.test(token)) return false;

  const body = token.slice(PAT_PREFIX.length, PAT_PREFIX.length + RANDOM_LENGTH);
  return token.slice(-CHECKSUM_LENGTH) === encodeChecksum(body);
}
