import { hash, verify } from '@node-rs/argon2';

// `Algorithm.Argon2id` of @node-rs/argon2: a const enum, which verbatimModuleSyntax cannot
// import.
const ARGON2ID = 2;

/** argon2id cost parameters. The PHC string of each hash records its own, so changing
 * these keeps every existing key valid. */
export interface Argon2Options {
  /** Memory in KiB. @default 19456 (OWASP) */
  memoryCost?: number;
  /** Iterations. @default 2 (OWASP) */
  timeCost?: number;
  /** Lanes. @default 1 (OWASP) */
  parallelism?: number;
}

export const OWASP_ARGON2: Required<Argon2Options> = {
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
};

export function hashKey(rawKey: string, options: Argon2Options = {}): Promise<string> {
  return hash(rawKey, { ...OWASP_ARGON2, ...options, algorithm: ARGON2ID });
}

/** argon2's own verify compares the derived hash in constant time. A malformed stored hash
 * counts as a mismatch, never a crash. */
export async function verifyKeyHash(phc: string, rawKey: string): Promise<boolean> {
  try {
    return await verify(phc, rawKey);
  } catch {
    return false;
  }
}
