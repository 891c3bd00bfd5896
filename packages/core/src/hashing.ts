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
  return announced('hash', () =>
    hash(rawKey, { ...OWASP_ARGON2, ...options, algorithm: ARGON2ID }),
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
