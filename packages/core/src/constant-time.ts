import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Compares two secret strings in time that depends on neither their content nor which of
 * them is longer. `timingSafeEqual` alone throws on unequal lengths, and checking the
 * lengths first would answer early: both sides are first hashed to SHA-256 digests, so
 * every pair takes the same path to one fixed-size comparison. (Hashing takes time in
 * proportion to the input's length, which reveals a length, never content.)
 *
 * keyward itself compares no secret material this way: argon2's verify compares inside
 * the native code, and caches are keyed by a digest of the raw key. This is for host code
 * and adapters that hold a secret of their own (a webhook signature, an admin token).
 */
export function constantTimeEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
