import { availableParallelism } from 'node:os';
import type { InvalidationBus } from './bus.js';
import { type Argon2Options, resolveArgon2Options } from './hashing.js';
import { parseScopes } from './key-fields.js';
import { DEFAULT_KEY_PREFIX, isValidKeyPrefix } from './key-format.js';
import {
  DEFAULT_QUARANTINE_GRACE_SECONDS,
  LEAK_POLICIES,
  type LeakEvent,
  type LeakPolicy,
  MAX_QUARANTINE_GRACE_SECONDS,
} from './leak.js';
import type { KeyStore } from './store.js';

/** Why a presented key was refused. Reported to `onInvalidKey`, never to the client: every
 * one of them answers the same `invalid_api_key`. */
export type InvalidKeyReason =
  | 'malformed'
  | 'unknown_key'
  | 'wrong_secret'
  | 'expired'
  | 'too_many_failures';

export interface KeyServiceOptions {
  /** Where keys are kept. */
  store: KeyStore;
  /** Prefix of every key this service issues and accepts, `[a-z][a-z0-9]{1,15}`.
   * @default 'rep' */
  prefix?: string;
  /** Scopes of a key the host's code creates without naming any. Keys created over HTTP
   * default to the creating key's scopes instead. @default ['*'] */
  defaultScopes?: readonly string[];
  /** Most keys one account may hold. @default 100 */
  maxKeysPerOwner?: number;
  /** Renames one account may make per minute on this instance; past this, `rate_limited`
   * (429, with Retry-After). Each rename drops the key from every instance's cache, so an
   * account renaming in a loop would otherwise keep the bus and the caches churning.
   * @default 60 */
  maxRenamesPerMinute?: number;
  /** argon2id cost. Settings below OWASP's minimums are refused unless
   * `allowWeakParameters` is set, which is for tests only.
   * @default OWASP: { memoryCost: 19456, timeCost: 2, parallelism: 1 } */
  argon2?: Argon2Options & {
    /** Accepts settings below OWASP's minimums (fast tests). Never in production.
     * @default false */
    allowWeakParameters?: boolean;
  };
  /** Verified keys kept in memory, so a warm request touches neither store nor argon2. */
  cache?: {
    /** Most keys held. @default 10000 */
    max?: number;
    /** How long a verified key is trusted without asking the store again. Without an
     * invalidation bus, this is how long a key revoked on another instance keeps working
     * there. @default 60000 */
    ttlMs?: number;
  };
  /** Recently refused keys, so repeating one costs no store read. */
  negativeCache?: {
    /** @default 10000 */
    max?: number;
    /** @default 10000 */
    ttlMs?: number;
  };
  /** Bounds argon2 work in flight for the process. */
  verification?: {
    /** argon2 verifications running at once. @default os.availableParallelism() */
    maxConcurrent?: number;
    /** Verifications waiting for a slot; past this, `service_unavailable`. Hashes for new
     * keys wait in a queue of their own, as long. @default 64 */
    maxQueue?: number;
    /** How many of the `maxConcurrent` slots hashes for new keys (`create`) may hold at
     * once. Verifications go first for a freed slot, and each account hashes one key at a
     * time, so a burst of creates cannot starve verification. Never more than
     * `maxConcurrent`. @default half of maxConcurrent, at least 1 */
    maxConcurrentHashes?: number;
    /** Wrong secrets for one lookup part before it is refused for `cooldownMs` without
     * running argon2. @default 10 */
    maxFailures?: number;
    /** How long a lookup part stays refused once over `maxFailures`, counted from its
     * first failure. @default 60000 */
    cooldownMs?: number;
    /** During a cooldown, one attempt per lookup part is still let through this often, and
     * a key this instance has verified before for that lookup part always is: whoever
     * knows a key's lookup part (the first characters of the key) cannot lock its owner
     * out for good by sending wrong secrets. @default 2000 */
    probeIntervalMs?: number;
    /** Refusals of well-formed keys (unknown, wrong secret, revoked, over the failure
     * budget) answered at once, per second, with a burst of as many. Past this rate, each
     * further one waits `failureDelayMs`: see there. @default 100 */
    refusalsPerSecond?: number;
    /** How long after its arrival a refusal over `refusalsPerSecond` is answered. A client
     * cycling through bad keys then sits on a timer instead of keeping the event loop and
     * the store busy: each connection of a flood gets about one answer a second, not
     * thousands, so it cannot crowd out cached traffic. Malformed keys are always refused
     * at once (they cost microseconds), and a trickle of refusals (typos, a revoked key in
     * a cron job) is never delayed. 0 turns the delay off. @default 1000 */
    failureDelayMs?: number;
  };
  /** How often lastUsedAt values are written, in one batch. @default 1000 */
  lastUsedFlushIntervalMs?: number;
  /** A store call slower than this answers `service_unavailable`. @default 5000 */
  storeTimeoutMs?: number;
  /** Drops a revoked or renamed key from every instance's cache. @default none */
  bus?: InvalidationBus;
  /** What happens to a key reported leaked and confirmed real (docs/design.md, "Leak
   * response"): by GitHub's secret scanning, the public report route, or `reportLeak`. */
  leaks?: {
    /** `quarantine`: the key keeps working until now + `quarantineGraceSeconds` (its
     * expiry is brought forward, never extended), loses its management scopes and is
     * marked (`leakedAt`, `leakSource`). `revoke`: the key and every key it created go at
     * once. `notify`: nothing changes; only `onLeak` is called. @default 'quarantine' */
    policy?: LeakPolicy;
    /** Seconds a quarantined key keeps working, 1 to 86,400. @default 3600 */
    quarantineGraceSeconds?: number;
    /** Called once per key confirmed leaked, whatever the policy, after the policy was
     * applied: tell the owner here. Never given the key. What it throws or rejects with goes
     * to `onError`. */
    onLeak?: (event: LeakEvent) => void | Promise<void>;
  };
  /**
   * With a bus that reads a replayable log (`postgresLogBus`, `redisStreamBus`): how old
   * this instance's view of the log may grow before a cached key is no longer taken on
   * trust. Past it, each cached key is checked against the store (one read, no argon2)
   * before it is accepted, and refused with 503 if the store cannot answer. So a key
   * revoked anywhere is refused here within this bound. Ignored with another bus or none.
   * @default 5000
   */
  maxStalenessMs?: number;
  /** Called on each refused key, for the host's logs and metrics. Never given the key. */
  onInvalidKey?: (event: { reason: InvalidKeyReason; keyPrefix?: string }) => void;
  /** Called with infrastructure and unexpected errors. keyward logs nothing itself. */
  onError?: (error: unknown) => void;
  /** The clock, for tests. @default () => new Date() */
  now?: () => Date;
}

export type ResolvedOptions = ReturnType<typeof resolveOptions>;

/** Fills in every default and rejects nonsense, once, when the service is made. */
export function resolveOptions(options: KeyServiceOptions) {
  if (!options || typeof options.store !== 'object' || options.store === null) {
    throw new TypeError('keyward: `store` is required (for example memoryStore()).');
  }
  const prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
  if (!isValidKeyPrefix(prefix)) {
    throw new TypeError(
      `keyward: \`prefix\` must match [a-z][a-z0-9]{1,15}; got ${JSON.stringify(prefix)}.`,
    );
  }
  const now = options.now;
  const maxConcurrent = positiveInt(
    'verification.maxConcurrent',
    options.verification?.maxConcurrent,
    availableParallelism(),
  );
  return {
    store: options.store,
    prefix,
    defaultScopes: scopeList('defaultScopes', options.defaultScopes),
    maxKeysPerOwner: positiveInt('maxKeysPerOwner', options.maxKeysPerOwner, 100),
    maxRenamesPerMinute: positiveInt('maxRenamesPerMinute', options.maxRenamesPerMinute, 60),
    argon2: argon2Settings(options.argon2),
    cacheMax: positiveInt('cache.max', options.cache?.max, 10_000),
    cacheTtlMs: positiveInt('cache.ttlMs', options.cache?.ttlMs, 60_000),
    negativeCacheMax: positiveInt('negativeCache.max', options.negativeCache?.max, 10_000),
    negativeCacheTtlMs: positiveInt('negativeCache.ttlMs', options.negativeCache?.ttlMs, 10_000),
    maxConcurrent,
    maxConcurrentHashes: Math.min(
      maxConcurrent,
      positiveInt(
        'verification.maxConcurrentHashes',
        options.verification?.maxConcurrentHashes,
        Math.max(1, Math.floor(maxConcurrent / 2)),
      ),
    ),
    maxQueue: nonNegativeInt('verification.maxQueue', options.verification?.maxQueue, 64),
    maxFailures: positiveInt('verification.maxFailures', options.verification?.maxFailures, 10),
    cooldownMs: positiveInt('verification.cooldownMs', options.verification?.cooldownMs, 60_000),
    probeIntervalMs: positiveInt(
      'verification.probeIntervalMs',
      options.verification?.probeIntervalMs,
      2000,
    ),
    refusalsPerSecond: positiveInt(
      'verification.refusalsPerSecond',
      options.verification?.refusalsPerSecond,
      100,
    ),
    failureDelayMs: nonNegativeInt(
      'verification.failureDelayMs',
      options.verification?.failureDelayMs,
      1000,
    ),
    lastUsedFlushIntervalMs: positiveInt(
      'lastUsedFlushIntervalMs',
      options.lastUsedFlushIntervalMs,
      1000,
    ),
    storeTimeoutMs: positiveInt('storeTimeoutMs', options.storeTimeoutMs, 5000),
    bus: options.bus,
    leakPolicy: leakPolicy(options.leaks?.policy),
    quarantineGraceSeconds: quarantineGrace(options.leaks?.quarantineGraceSeconds),
    onLeak: options.leaks?.onLeak ?? (() => {}),
    maxStalenessMs: stalenessBound(options),
    onInvalidKey: options.onInvalidKey ?? (() => {}),
    onError: options.onError ?? (() => {}),
    now: options.now ?? (() => new Date()),
    /** The clock in epoch ms, for the hot path: no Date per request. */
    nowMs: now ? () => now().getTime() : Date.now,
  };
}

function leakPolicy(value: LeakPolicy | undefined): LeakPolicy {
  if (value === undefined) return 'quarantine';
  if (!LEAK_POLICIES.includes(value)) {
    throw new TypeError(
      `keyward: \`leaks.policy\` must be one of ${LEAK_POLICIES.join(', ')}; got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

function quarantineGrace(value: number | undefined): number {
  const seconds = positiveInt(
    'leaks.quarantineGraceSeconds',
    value,
    DEFAULT_QUARANTINE_GRACE_SECONDS,
  );
  if (seconds > MAX_QUARANTINE_GRACE_SECONDS) {
    throw new TypeError(
      `keyward: \`leaks.quarantineGraceSeconds\` must be at most ${MAX_QUARANTINE_GRACE_SECONDS} (24 hours); got ${seconds}.`,
    );
  }
  return seconds;
}

/** `value`, or `fallback` when unset; anything but a positive integer is a TypeError naming
 * `name`. */
export function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`keyward: \`${name}\` must be a positive integer; got ${value}.`);
  }
  return value;
}

function nonNegativeInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`keyward: \`${name}\` must be a whole number ≥ 0; got ${value}.`);
  }
  return value;
}

function argon2Settings(options: KeyServiceOptions['argon2']): Required<Argon2Options> {
  const { allowWeakParameters = false, ...cost } = options ?? {};
  return resolveArgon2Options(cost, allowWeakParameters === true);
}

function scopeList(name: string, value: readonly string[] | undefined): readonly string[] {
  if (value === undefined) return Object.freeze(['*']);
  try {
    return Object.freeze(parseScopes(value));
  } catch (error) {
    throw new TypeError(`keyward: \`${name}\`: ${(error as Error).message}`);
  }
}

/**
 * `maxStalenessMs`, checked against the bus's heartbeat: a log bus reads its log at least
 * every `heartbeatMs` while quiet, and a bound under two heartbeats would send a quiet,
 * healthy instance's cached keys to the store between two reads (docs/design.md,
 * "Invalidation log").
 */
function stalenessBound(options: KeyServiceOptions): number {
  const bound = positiveInt('maxStalenessMs', options.maxStalenessMs, 5000);
  const heartbeatMs = options.bus?.vouchesForView ? options.bus.heartbeatMs : undefined;
  if (heartbeatMs !== undefined && bound < 2 * heartbeatMs) {
    throw new TypeError(
      `keyward: maxStalenessMs (${bound}) must be at least twice the bus's heartbeatMs (${heartbeatMs}): otherwise an instance whose log is merely quiet checks every cached key in the store between two heartbeats. Raise maxStalenessMs or lower heartbeatMs.`,
    );
  }
  return bound;
}
