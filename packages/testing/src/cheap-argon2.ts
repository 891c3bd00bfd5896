/**
 * Argon2id settings for tests: far below OWASP's minimums (1 MiB, one pass), so a hash
 * costs about a millisecond instead of tens. `allowWeakParameters` is what lets a key
 * service accept them; never use them outside tests.
 */
export const CHEAP_ARGON2 = {
  memoryCost: 1024,
  timeCost: 1,
  parallelism: 1,
  allowWeakParameters: true,
} as const;
