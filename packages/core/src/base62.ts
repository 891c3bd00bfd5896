import { randomBytes } from 'node:crypto';

export const BASE62_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const isBase62 = /^[0-9A-Za-z]*$/;

export function isBase62String(value: string): boolean {
  return isBase62.test(value);
}

/**
 * `length` characters drawn uniformly from the base62 alphabet. Bytes of 248 and above are
 * thrown away (248 = 4 × 62), so `byte % 62` carries no modulo bias.
 */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(Math.ceil((length - out.length) * 1.1) + 4)) {
      if (byte < 248) {
        out += BASE62_ALPHABET[byte % 62];
        if (out.length === length) break;
      }
    }
  }
  return out;
}

/** A non-negative integer in base62, most significant digit first, left-padded with `0`. */
export function encodeBase62(value: number, width: number): string {
  let out = '';
  let rest = value;
  do {
    out = BASE62_ALPHABET[rest % 62] + out;
    rest = Math.floor(rest / 62);
  } while (rest > 0);
  return out.padStart(width, '0');
}
