import { BODY_LENGTH, CHECKSUM_LENGTH, keyChecksum, LOOKUP_LENGTH, maskKey } from '@keyward/core';

/** A key found in a text, masked. */
export interface Finding {
  /** 1-based. */
  line: number;
  /** `<prefix>_` and the first 4 body characters, `…`, the checksum: never the secret. */
  masked: string;
}

/** Longest prefix a key may have (`[a-z][a-z0-9]{1,15}`). */
const MAX_PREFIX = 16;

/**
 * The body of a key: `_`, then exactly 50 base62 characters. The prefix is found by walking
 * back from the `_`, so that one pass of a simple regex finds keys of any prefix, glued to
 * other text or not; only the checksum decides.
 */
const body = new RegExp(`_[0-9A-Za-z]{${BODY_LENGTH}}(?![0-9A-Za-z])`, 'g');

const isLowerOrDigit = (code: number) =>
  (code >= 0x61 && code <= 0x7a) || (code >= 0x30 && code <= 0x39);
const isLower = (code: number) => code >= 0x61 && code <= 0x7a;

/**
 * Keys in `text` (a file read as latin1: one char per byte, so keys, which are ASCII, read
 * as they are in any ASCII-compatible encoding) whose checksum holds. Look-alikes with a
 * wrong checksum are not reported: about one in 4 billion random strings passes.
 */
export function scanText(text: string): Finding[] {
  const findings: Finding[] = [];
  let line = 1;
  let counted = 0;
  body.lastIndex = 0;
  for (let match = body.exec(text); match !== null; match = body.exec(text)) {
    const underscore = match.index;
    const rawBody = match[0].slice(1);
    const lookup = rawBody.slice(0, LOOKUP_LENGTH);
    const secret = rawBody.slice(LOOKUP_LENGTH, BODY_LENGTH - CHECKSUM_LENGTH);
    const checksum = rawBody.slice(BODY_LENGTH - CHECKSUM_LENGTH);
    // The lower-case run before the `_`; any tail of it starting with a letter may be the
    // prefix (`myrep_…` holds a key of prefix `rep`).
    let start = underscore;
    while (
      start > 0 &&
      underscore - start < MAX_PREFIX &&
      isLowerOrDigit(text.charCodeAt(start - 1))
    ) {
      start -= 1;
    }
    for (let from = underscore - 2; from >= start; from -= 1) {
      if (!isLower(text.charCodeAt(from))) continue;
      const prefix = text.slice(from, underscore);
      if (keyChecksum(prefix, lookup, secret) !== checksum) continue;
      while (counted < from) {
        const next = text.indexOf('\n', counted);
        if (next === -1 || next >= from) break;
        line += 1;
        counted = next + 1;
      }
      const { keyPrefix, keySuffix } = maskKey(`${prefix}_${rawBody}`);
      findings.push({ line, masked: `${keyPrefix}…${keySuffix}` });
      break;
    }
  }
  return findings;
}
