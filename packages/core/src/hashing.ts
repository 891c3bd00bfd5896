import { channel } from 'node:diagnostics_channel';
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

/** OWASP's Password Storage Cheat Sheet lists five equally strong argon2id settings
 * (memory in KiB, iterations), all with one lane; a setting is strong enough when it meets
 * one of them in both memory and iterations. */
const OWASP_MINIMUMS: ReadonlyArray<readonly [memoryCost: number, timeCost: number]> = [
  [47104, 1],
  [19456, 2],
  [12288, 3],
  [9216, 4],
  [7168, 5],
];

/** Fills in OWASP's defaults and refuses a setting below OWASP's minimums, or one argon2
 * cannot run, with a message that says what would do. `allowWeak` (tests only) skips the
 * strength check but not the sanity checks. */
export function resolveArgon2Options(
  options: Argon2Options = {},
  allowWeak = false,
): Required<Argon2Options> {
  const resolved = { ...OWASP_ARGON2, ...options };
  for (const field of ['memoryCost', 'timeCost', 'parallelism'] as const) {
    const value = resolved[field];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new TypeError(`keyward: \`argon2.${field}\` must be a positive integer; got ${value}.`);
    }
  }
  if (resolved.memoryCost < 8 * resolved.parallelism) {
    throw new TypeError('keyward: `argon2.memoryCost` must be at least 8 KiB per lane.');
  }
  const strong = OWASP_MINIMUMS.some(
    ([memoryCost, timeCost]) => resolved.memoryCost >= memoryCost && resolved.timeCost >= timeCost,
  );
  if (!strong && !allowWeak) {
    throw new TypeError(
      `keyward: argon2id with memoryCost ${resolved.memoryCost} KiB and timeCost ${resolved.timeCost} is below OWASP's minimums (for example memoryCost 19456 with timeCost 2, or 47104 with 1). Use stronger settings, or set \`argon2.allowWeakParameters: true\` in tests only.`,
    );
  }
  return resolved;
}

/** The `node:diagnostics_channel` name on which every argon2id hash and verify is announced
 * once it has finished, as an {@link Argon2Event}: what argon2 costs on the host's own
 * hardware, to tune {@link Argon2Options} by. Nothing is measured while nobody listens. */
export const ARGON2_CHANNEL = 'keyward:argon2';

export interface Argon2Event {
  readonly operation: 'hash' | 'verify';
  /** From the call to its result, in ms: libuv's thread pool included, keyward's own queue
   * for argon2 (the concurrency bound) not. */
  readonly durationMs: number;
}

const argon2Channel = channel(ARGON2_CHANNEL);

/** Runs an argon2 call, and announces its duration when someone listens. */
async function announced<T>(
  operation: Argon2Event['operation'],
  call: () => Promise<T>,
): Promise<T> {
  if (!argon2Channel.hasSubscribers) return call();
  const started = performance.now();
  try {
    return await call();
  } finally {
    const event: Argon2Event = { operation, durationMs: performance.now() - started };
    argon2Channel.publish(event);
  }
}

export function hashKey(rawKey: string, options: Argon2Options = {}): Promise<string> {
  // Only the three cost fields reach argon2, whatever else the caller's object holds.
  const { memoryCost, timeCost, parallelism } = { ...OWASP_ARGON2, ...options };
  return announced('hash', () =>
    hash(rawKey, { memoryCost, timeCost, parallelism, algorithm: ARGON2ID }),
  );
}

/** argon2's own verify compares the derived hash in constant time. A malformed stored hash
 * counts as a mismatch, never a crash. */
export async function verifyKeyHash(phc: string, rawKey: string): Promise<boolean> {
  try {
    return await announced('verify', () => verify(phc, rawKey));
  } catch {
    return false;
  }
}
