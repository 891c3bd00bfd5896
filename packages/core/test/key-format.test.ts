import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BASE62_ALPHABET, encodeBase62, randomBase62 } from '../src/base62.js';
import {
  BODY_LENGTH,
  generateKey,
  isValidKeyPrefix,
  keyChecksum,
  LOOKUP_LENGTH,
  maskKey,
  parseKey,
  SECRET_LENGTH,
} from '../src/key-format.js';

const prefixArb = fc.stringMatching(/^[a-z][a-z0-9]{1,15}$/);
const seed = 20261126;

describe('key format', () => {
  it('a generated key is <prefix>_<50 base62 characters>', () => {
    const { rawKey } = generateKey();
    expect(rawKey).toMatch(/^rep_[0-9A-Za-z]{50}$/);
  });

  it('the checksum is CRC-32 of <prefix>_<lookup><secret> in 6 base62 digits, most significant first', () => {
    // A known vector, worked by hand from zlib's CRC-32.
    const lookup = 'A'.repeat(LOOKUP_LENGTH);
    const secret = 'b'.repeat(SECRET_LENGTH);
    let n = crc32(`rep_${lookup}${secret}`);
    let digits = '';
    while (n > 0) {
      digits = BASE62_ALPHABET[n % 62] + digits;
      n = Math.floor(n / 62);
    }
    expect(keyChecksum('rep', lookup, secret)).toBe(digits.padStart(6, '0'));
    expect(encodeBase62(0, 6)).toBe('000000');
    expect(encodeBase62(61, 6)).toBe('00000z');
    expect(encodeBase62(62, 6)).toBe('000010');
    expect(encodeBase62(0xffffffff, 6)).toBe('4gfFC3');
  });

  it('generated keys always parse, to their own lookup part (property)', () => {
    fc.assert(
      fc.property(prefixArb, (prefix) => {
        const key = generateKey(prefix);
        expect(parseKey(key.rawKey, prefix)).toEqual({ lookup: key.lookup });
        expect(key.rawKey.slice(prefix.length + 1, prefix.length + 1 + LOOKUP_LENGTH)).toBe(
          key.lookup,
        );
      }),
      { seed, numRuns: 300 },
    );
  });

  it('every single-character change is caught by the checksum or the alphabet check (property)', () => {
    fc.assert(
      fc.property(
        prefixArb,
        fc.nat(),
        fc.oneof(fc.constantFrom(...BASE62_ALPHABET), fc.string({ minLength: 1, maxLength: 1 })),
        (prefix, at, replacement) => {
          const { rawKey } = generateKey(prefix);
          const i = at % rawKey.length;
          fc.pre(rawKey[i] !== replacement);
          const changed = rawKey.slice(0, i) + replacement + rawKey.slice(i + 1);
          expect(parseKey(changed, prefix)).toBeNull();
        },
      ),
      { seed, numRuns: 3000 },
    );
  });

  it('exhaustively: every position of one key, changed to every other base62 character, is refused', () => {
    const { rawKey } = generateKey();
    let refused = 0;
    for (let i = 0; i < rawKey.length; i++) {
      for (const c of BASE62_ALPHABET) {
        if (c === rawKey[i]) continue;
        expect(parseKey(rawKey.slice(0, i) + c + rawKey.slice(i + 1))).toBeNull();
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(50 * 61);
  });

  it('keyPrefix is <prefix>_ and the first 4 body characters; keySuffix is the 6-character checksum (property)', () => {
    fc.assert(
      fc.property(prefixArb, (prefix) => {
        const key = generateKey(prefix);
        const body = key.rawKey.slice(prefix.length + 1);
        expect(key.keyPrefix).toBe(`${prefix}_${body.slice(0, 4)}`);
        expect(key.keySuffix).toBe(body.slice(-6));
        expect(maskKey(key.rawKey)).toEqual({ keyPrefix: key.keyPrefix, keySuffix: key.keySuffix });
        // The masks hold nothing of the secret: the prefix shows lookup characters only,
        // the suffix is the checksum.
        expect(key.keyPrefix.slice(prefix.length + 1)).toBe(key.lookup.slice(0, 4));
        const secret = body.slice(LOOKUP_LENGTH, LOOKUP_LENGTH + SECRET_LENGTH);
        expect(key.keySuffix).toBe(keyChecksum(prefix, key.lookup, secret));
        expect(body.length).toBe(BODY_LENGTH);
      }),
      { seed, numRuns: 300 },
    );
  });

  it('refuses other prefixes, lengths, separators and alphabets without throwing (property)', () => {
    const { rawKey } = generateKey();
    expect(parseKey(rawKey, 'live')).toBeNull();
    expect(parseKey(`${rawKey}0`)).toBeNull();
    expect(parseKey(rawKey.slice(0, -1))).toBeNull();
    expect(parseKey(rawKey.replace('_', '-'))).toBeNull();
    expect(parseKey('')).toBeNull();
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (value) => {
        const parsed = parseKey(value);
        if (parsed) expect(value).toMatch(/^rep_[0-9A-Za-z]{50}$/);
      }),
      { seed, numRuns: 2000 },
    );
  });

  it('prefixes follow [a-z][a-z0-9]{1,15}', () => {
    for (const ok of ['rep', 'ab', 'live2', 'a234567890123456'])
      expect(isValidKeyPrefix(ok)).toBe(true);
    for (const bad of ['a', 'Rep', '1ab', 'a_b', 'a2345678901234567', '']) {
      expect(isValidKeyPrefix(bad)).toBe(false);
    }
  });

  it('randomBase62 is unbiased enough: every character appears, none far from its share', () => {
    const counts = new Map<string, number>();
    const sample = randomBase62(62 * 2000);
    for (const c of sample) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    for (const n of counts.values()) {
      // 2000 expected per character; 6 standard deviations is ≈ 265.
      expect(Math.abs(n - 2000)).toBeLessThan(300);
    }
  });
});
