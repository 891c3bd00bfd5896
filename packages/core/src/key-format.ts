import { crc32 } from 'node:zlib';
import { encodeBase62, isBase62String, randomBase62 } from './base62.js';

/** Lengths of the three parts of a key body (docs/design.md, "Key format"). */
export const LOOKUP_LENGTH = 12;
export const SECRET_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
export const BODY_LENGTH = LOOKUP_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH;
/** keyPrefix shows the prefix, `_` and this many body characters. */
const VISIBLE_BODY_CHARS = 4;

export const DEFAULT_KEY_PREFIX = 'rep';
const prefixPattern = /^[a-z][a-z0-9]{1,15}$/;

export function isValidKeyPrefix(prefix: string): boolean {
  return prefixPattern.test(prefix);
}

/** The checksum of a key: CRC-32 of `<prefix>_<lookup><secret>`, as 6 base62 digits. */
export function keyChecksum(prefix: string, lookup: string, secret: string): string {
  return encodeBase62(crc32(`${prefix}_${lookup}${secret}`), CHECKSUM_LENGTH);
}

export interface GeneratedKey {
  /** The full key. Shown once, in the create response; never stored. */
  rawKey: string;
  /** Random, indexed in the store to find the key's record. Never shown. */
  lookup: string;
  /** What keys list and dashboards show: `<prefix>_` and the first 4 body characters. */
  keyPrefix: string;
  /** The last 6 characters: the checksum, so it reveals no secret entropy. */
  keySuffix: string;
}

export function generateKey(prefix: string = DEFAULT_KEY_PREFIX): GeneratedKey {
  const lookup = randomBase62(LOOKUP_LENGTH);
  const secret = randomBase62(SECRET_LENGTH);
  const checksum = keyChecksum(prefix, lookup, secret);
  const rawKey = `${prefix}_${lookup}${secret}${checksum}`;
  return { rawKey, lookup, ...maskKey(rawKey) };
}

/** keyPrefix and keySuffix of a well-formed key. */
export function maskKey(rawKey: string): { keyPrefix: string; keySuffix: string } {
  const bodyStart = rawKey.length - BODY_LENGTH;
  return {
    keyPrefix: rawKey.slice(0, bodyStart + VISIBLE_BODY_CHARS),
    keySuffix: rawKey.slice(-CHECKSUM_LENGTH),
  };
}

export interface ParsedKey {
  lookup: string;
}

/**
 * Checks a presented key offline: prefix, length, alphabet and checksum. Returns its lookup
 * part, or `null` for anything malformed. Costs microseconds and touches no store, so typos
 * and garbage never reach the database or argon2.
 */
export function parseKey(value: string, prefix: string = DEFAULT_KEY_PREFIX): ParsedKey | null {
  if (value.length !== prefix.length + 1 + BODY_LENGTH) return null;
  if (!value.startsWith(prefix) || value[prefix.length] !== '_') return null;
  const body = value.slice(prefix.length + 1);
  if (!isBase62String(body)) return null;
  const lookup = body.slice(0, LOOKUP_LENGTH);
  const secret = body.slice(LOOKUP_LENGTH, LOOKUP_LENGTH + SECRET_LENGTH);
  if (keyChecksum(prefix, lookup, secret) !== body.slice(LOOKUP_LENGTH + SECRET_LENGTH)) {
    return null;
  }
  return { lookup };
}

/** The public id of a key: `key_` and 20 random base62 characters, unrelated to the key. */
export function generateKeyId(): string {
  return `key_${randomBase62(20)}`;
}
