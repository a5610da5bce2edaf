import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const INFO = 'speedgate refresh token retry';

// The key comes from the raw rotated token, which the database never holds:
// only a client presenting that token again can open what was stored.
function deriveKey(rawToken: string, tokenId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', rawToken, tokenId, INFO, 32));
}

/** Encrypts a token response with AES-256-GCM under a key derived from `rawToken`. */
export function sealResponse(value: unknown, rawToken: string, tokenId: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', deriveKey(rawToken, tokenId), iv);
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${iv.toString('base64url')}.${ciphertext.toString('base64url')}`;
}

/** Decrypts what sealResponse stored; returns undefined when it cannot be opened. */
export function openResponse<T>(sealed: string, rawToken: string, tokenId: string): T | undefined {
  const [ivText, bodyText] = sealed.split('.');
  if (ivText === undefined || bodyText === undefined) return undefined;

  try {
    const body = Buffer.from(bodyText, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', deriveKey(rawToken, tokenId), Buffer.from(ivText, 'base64url'));
    decipher.setAuthTag(body.subarray(body.length - 16));
    const plain = Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]);
    return JSON.parse(plain.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
