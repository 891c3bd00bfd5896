import { hash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import { verifyKeyHash } from './hashing.js';
import { InvalidationLog } from './invalidation-log.js';
import { BODY_LENGTH, parseKey } from './key-format.js';
import type { LastUsedWriter } from './last-used.js';
import type { InvalidKeyReason, ResolvedOptions } from './options.js';
import { PositiveCache } from './positive-cache.js';
import type { Semaphore } from './semaphore.js';
import type { Credits, KeyMetadata, RateLimit, StoredKey } from './store.js';

/** The key that authenticated a request (`req.apiKey` / `request.apiKey`). Frozen, its
 * scopes and metadata too. */
export interface AuthenticatedKey {
  readonly id: string;
  readonly ownerId: string;
  readonly name: string;
  readonly keyPrefix: string;
  readonly keySuffix: string;
  readonly createdAt: Date;
  /** From this instant on the key is refused; `null`: never. */
  readonly expiresAt: Date | null;
  /** What the key may do; `['*']` is everything. */
  readonly scopes: readonly string[];
  /** The host's own JSON object, as given when the key was made or last updated. */
  readonly metadata: Readonly<KeyMetadata>;
  /** At most `limit` requests per window; `null`: none. */
  readonly rateLimit: Readonly<RateLimit> | null;
  /** The key's credits as they were when it was verified; `null`: none. */
  readonly credits: Readonly<Credits> | null;
  /** When the key was confirmed leaked and quarantined; `null` otherwise. A marked key
   * holds no management scope. */
  readonly leakedAt: Date | null;
  /** Who reported that leak. */
  readonly leakSource: string | null;
}

export type VerifyResult =
  | { ok: true; key: AuthenticatedKey }
  | { ok: false; reason: InvalidKeyReason };
type VerifiedResult = Extract<VerifyResult, { ok: true }>;

/** A verification's result, and whether its key was invalidated while it ran. */
interface Outcome {
  result: VerifyResult;
  stale: boolean;
}

/** A cold verification in flight, and the invalidation sequence number it started at. */
interface Verification {
  outcome: Promise<Outcome>;
  startedAt: number;
}

/** Attempts at one lookup part in flight or failed, and when its last probe went through
 * (or, before any, when the budget began). */
interface FailureBudget {
  count: number;
  probedAt: number;
}

/** Keys whose last invalidation is remembered while verifications are in flight; past
 * this, the oldest go and verifications that started before them are not cached. */
const INVALIDATION_LOG_MAX = 10_000;

/** What the verifier needs from the service that owns it. */
export interface VerifierDeps {
  options: ResolvedOptions;
  argon2Slots: Semaphore;
  lastUsed: LastUsedWriter;
  /** A store call with the service's deadline and failure mapping. */
  callStore<T>(call: () => Promise<T>): Promise<T>;
}

export type Verifier = ReturnType<typeof createVerifier>;

/**
 * The guard's side of the service (docs/design.md, "Verification"): the positive cache
 * (after a length check; a hit needs no parse), the offline format and checksum check, the
 * negative cache, the per-lookup failure budget, one indexed store read, and argon2id under
 * a process-wide bound. Refusals past `refusalsPerSecond` are held `failureDelayMs`, so a
 * flood of bad keys waits on timers. A key is refused from its `expiresAt` on, to the
 * millisecond, cached or not, with no timer per key.
 */
export function createVerifier({ options: o, argon2Slots, lastUsed, callStore }: VerifierDeps) {
  const { store } = o;
  const keyLength = o.prefix.length + 1 + BODY_LENGTH;
  const refused = new LRUCache<string, InvalidKeyReason>({
    max: o.negativeCacheMax,
    ttl: o.negativeCacheTtlMs,
  });
  // Keyed by the SHA-256 of the raw key, so it holds no usable secret. Its values are the
  // results a hit returns, made once, so a hit allocates nothing. A hit past the key's
  // expiry is a miss, and the digest is refused from then on without a store read.
  const verified = new PositiveCache<VerifiedResult>({
    max: o.cacheMax,
    ttlMs: o.cacheTtlMs,
    onUse: (id, at) => lastUsed.record(id, at),
    onExpired: (digest) => refused.set(digest, 'expired'),
  });
  const failures = new LRUCache<string, FailureBudget>({
    max: o.negativeCacheMax,
    ttl: o.cooldownMs,
  });
  // Lookup part → digest of the key last verified with it: that key passes the lookup's
  // cooldown, since nobody else can present it. Bounded like the positive cache, and only
  // verified keys get in.
  const knownGood = new LRUCache<string, string>({ max: o.cacheMax });
  const inFlight = new Map<string, Verification>();
  // Verifications running, in inFlight or not: while there are none, the invalidation log
  // has nobody to answer and is emptied.
  let running = 0;
  const invalidations = new InvalidationLog(INVALIDATION_LOG_MAX);
  // With a log bus, how fresh this instance's view of the log is (docs/design.md,
  // "Invalidation log"): a performance.now() reading, -Infinity until the bus first catches
  // up. Past maxStalenessMs, a cache hit is checked against the store before it is taken.
  const vouching = o.bus?.vouchesForView === true;
  let viewAsOf = Number.NEGATIVE_INFINITY;
  // Cache hits being re-checked against the store, by digest: one read per key at a time.
  const rechecks = new Map<string, Promise<VerifyResult>>();
  let refusalTokens = o.refusalsPerSecond;
  let refusalsRefilledAt = performance.now();

  /**
   * The guard's hot path. A cache hit costs one SHA-256 and one Map read: the positive
   * cache holds only keys that were parsed and verified, under the digest of the exact
   * string, so a hit needs no parse. Only the length is checked first, to keep headers of
   * any size out of the hash. Not `async`: a hit adds no promise layer of its own.
   */
  function verify(rawKey: string): Promise<VerifyResult> {
    if (typeof rawKey !== 'string' || rawKey.length !== keyLength) return refuseMalformed();
    const digest = digestOf(rawKey);
    const hit = verified.get(digest, o.nowMs());
    if (hit !== undefined)
      return viewIsStale() ? recheck(rawKey, digest, hit) : Promise.resolve(hit);
    return verifyUncached(rawKey, digest);
  }

  /** Whether cache hits must be re-checked: a log bus whose view is older than
   * maxStalenessMs. A comparison and a clock read; nothing is allocated. */
  function viewIsStale(): boolean {
    return vouching && performance.now() - viewAsOf > o.maxStalenessMs;
  }

  /** A cache hit while the view is stale: accepted only if the store still holds the same
   * key (one read by lookup part, no argon2: the digest was verified against this record's
   * hash before, and a record's hash never changes). The fresh record replaces the cached
   * one, so a change whose event was missed (scopes, expiry) takes effect. A key gone,
   * replaced or expired goes the cold way and is refused; a store that cannot answer
   * rejects (503). Concurrent hits of one key share the read. */
  function recheck(rawKey: string, digest: string, hit: VerifiedResult): Promise<VerifyResult> {
    let pending = rechecks.get(digest);
    if (pending === undefined) {
      pending = recheckInStore(rawKey, digest, hit).finally(() => rechecks.delete(digest));
      rechecks.set(digest, pending);
    }
    return pending;
  }

  async function recheckInStore(
    rawKey: string,
    digest: string,
    hit: VerifiedResult,
  ): Promise<VerifyResult> {
    const { id, ownerId } = hit.key;
    const parsed = parseKey(rawKey, o.prefix);
    const startedAt = invalidations.seq;
    running++;
    let record: StoredKey | null = null;
    try {
      if (parsed) record = await callStore(() => store.findByLookup(parsed.lookup));
    } finally {
      if (--running === 0) invalidations.clear();
    }
    const now = o.nowMs();
    if (
      record !== null &&
      record.id === id &&
      record.ownerId === ownerId &&
      (record.expiresAt === null || record.expiresAt.getTime() > now)
    ) {
      const result: VerifiedResult = Object.freeze({ ok: true, key: toAuthenticatedKey(record) });
      if (!invalidations.since(id, startedAt)) {
        verified.set(digest, result, now, record.expiresAt?.getTime());
      }
      return result;
    }
    verified.deleteKey(id, ownerId);
    return verifyUncached(rawKey, digest);
  }

  /** The cache hit of `verify`, synchronously: the key if it is cached (and that use
   * noted), else `undefined`, and the caller goes on to `verify`. Lets a guard answer a
   * warm request with no promise at all. */
  function verifyCached(rawKey: string): AuthenticatedKey | undefined {
    if (typeof rawKey !== 'string' || rawKey.length !== keyLength || viewIsStale()) {
      return undefined;
    }
    return verified.get(digestOf(rawKey), o.nowMs())?.key;
  }

  async function verifyUncached(rawKey: string, digest: string): Promise<VerifyResult> {
    const parsed = parseKey(rawKey, o.prefix);
    if (!parsed) return refuseMalformed();
    const arrived = performance.now();
    let result: VerifyResult;
    const knownBad = refused.get(digest);
    if (knownBad) {
      result = { ok: false, reason: knownBad };
    } else {
      const arrivedAt = invalidations.seq;
      let verification = joinOrStart(rawKey, parsed.lookup, digest, 0);
      let outcome = await verification.outcome;
      // Joined a verification that started before some invalidation this request arrived
      // after, and it was of this very key: the record it read may predate a revoke. Once
      // more from the store; that one starts after the invalidation, so once is enough.
      if (outcome.stale && verification.startedAt < arrivedAt) {
        verification = joinOrStart(rawKey, parsed.lookup, digest, arrivedAt);
        outcome = await verification.outcome;
      }
      result = outcome.result;
      // A shared verification may have finished just as the key expired.
      if (result.ok && isExpired(result.key, o.nowMs())) result = { ok: false, reason: 'expired' };
    }
    if (result.ok) {
      lastUsed.record(result.key.id, o.nowMs());
      return result;
    }
    o.onInvalidKey({ reason: result.reason, keyPrefix: maskedPrefix(rawKey) });
    const now = performance.now();
    if (!takeRefusalToken(now)) {
      const wait = o.failureDelayMs - (now - arrived);
      if (wait > 0) await sleep(wait);
    }
    return result;
  }

  /** The verification of `digest` in flight if it started at `minSeq` or later, else a new
   * one. Concurrent requests for one cold key share one store read and one argon2 run. */
  function joinOrStart(
    rawKey: string,
    lookup: string,
    digest: string,
    minSeq: number,
  ): Verification {
    const current = inFlight.get(digest);
    if (current && current.startedAt >= minSeq) return current;
    const startedAt = invalidations.seq;
    running++;
    const verification: Verification = {
      startedAt,
      outcome: verifyCold(rawKey, lookup, digest, startedAt).finally(() => {
        if (inFlight.get(digest) === verification) inFlight.delete(digest);
        if (--running === 0) invalidations.clear();
      }),
    };
    inFlight.set(digest, verification);
    return verification;
  }

  async function verifyCold(
    rawKey: string,
    lookup: string,
    digest: string,
    startedAt: number,
  ): Promise<Outcome> {
    // Admitted past a spent budget (the known key, or this interval's probe).
    let pastBudget = false;
    const early = failures.get(lookup);
    if (early && early.count >= o.maxFailures) {
      if (!mayPassCooldown(lookup, digest, early)) return refusal('too_many_failures');
      pastBudget = true;
    }
    const record = await callStore(() => store.findByLookup(lookup));
    if (!record) {
      refused.set(digest, 'unknown_key');
      return refusal('unknown_key');
    }
    // Expired: refused before argon2. Like an unknown lookup part, this answers sooner
    // than a live key would; the bytes are the same.
    if (record.expiresAt !== null && record.expiresAt.getTime() <= o.nowMs()) {
      refused.set(digest, 'expired');
      return refusal('expired');
    }
    // An attempt counts against the lookup's budget from the moment it is admitted, not
    // only once argon2 has said no: otherwise a burst of wrong secrets for one lookup
    // (they arrive together) would all pass the check above and queue that many argon2
    // runs. At most one secret per lookup is right: the real key loses nothing it would not
    // lose once those attempts had failed.
    let budget = failures.get(lookup);
    if (!budget) {
      budget = { count: 0, probedAt: performance.now() };
      failures.set(lookup, budget);
    }
    if (budget.count >= o.maxFailures && !pastBudget && !mayPassCooldown(lookup, digest, budget)) {
      return refusal('too_many_failures');
    }
    budget.count++;
    let matches: boolean;
    try {
      matches = await argon2Slots.run(() => verifyKeyHash(record.hash, rawKey));
    } catch (error) {
      release(lookup, budget);
      throw error;
    }
    if (!matches) {
      refused.set(digest, 'wrong_secret');
      return refusal('wrong_secret');
    }
    release(lookup, budget);
    knownGood.set(lookup, digest);
    const result: VerifiedResult = Object.freeze({ ok: true, key: toAuthenticatedKey(record) });
    // The record was read before an invalidation of this key: not cached, and not for a
    // request that arrived after it (see verifyUncached).
    const stale = invalidations.since(record.id, startedAt);
    if (!stale) verified.set(digest, result, o.nowMs(), record.expiresAt?.getTime());
    return { result, stale };
  }

  /** Whether an attempt at a lookup part over its failure budget goes on: the key last
   * verified with it does, and so does one attempt per `probeIntervalMs` (which it takes).
   * Flood protection stays (one argon2 run per interval per lookup part), but a lockout
   * cannot shut the real key out for the whole cooldown. */
  function mayPassCooldown(lookup: string, digest: string, budget: FailureBudget): boolean {
    if (knownGood.get(lookup) === digest) return true;
    const now = performance.now();
    if (now - budget.probedAt < o.probeIntervalMs) return false;
    budget.probedAt = now;
    return true;
  }

  /** A token bucket of immediate refusals: `refusalsPerSecond` a second, as many at once. */
  function takeRefusalToken(now: number): boolean {
    refusalTokens = Math.min(
      o.refusalsPerSecond,
      refusalTokens + ((now - refusalsRefilledAt) * o.refusalsPerSecond) / 1000,
    );
    refusalsRefilledAt = now;
    if (refusalTokens < 1) return false;
    refusalTokens--;
    return true;
  }

  /** Gives back an attempt that did not fail; an entry left at zero goes, so valid keys do
   * not crowd failing lookups out of the bounded failure cache. */
  function release(lookup: string, budget: FailureBudget): void {
    if (--budget.count <= 0 && failures.get(lookup) === budget) failures.delete(lookup);
  }

  /** Async so that a throwing `onInvalidKey` rejects, as everything else in verify does. */
  async function refuseMalformed(): Promise<VerifyResult> {
    o.onInvalidKey({ reason: 'malformed' });
    return { ok: false, reason: 'malformed' };
  }

  return {
    verify,
    verifyCached,
    /** Per key: a verification in flight of another key is still cached. With `ownerId`,
     * a cached key is dropped only if it is that owner's. */
    invalidate(keyId: string, ownerId?: string): void {
      invalidations.record(keyId);
      verified.deleteKey(keyId, ownerId);
    },
    /** Every key at once (the bus was away and events may have been lost): nothing verified
     * before stays cached, nor is a verification that started before cached when it ends. */
    invalidateAll(): void {
      invalidations.recordAll();
      verified.clear();
    },
    /** The log bus has delivered every event published before `asOf` (performance.now()). */
    caughtUp(asOf: number): void {
      if (asOf > viewAsOf) viewAsOf = asOf;
    },
    /** How old this instance's view of the log is, in ms; `null` without a log bus, and
     * `Infinity` until the bus first catches up. */
    viewAgeMs(): number | null {
      return vouching ? performance.now() - viewAsOf : null;
    },
    /** Empties the key cache and stops its timer: nothing would expire it any more. */
    close(): void {
      verified.close();
    },
    stats() {
      return { cachedKeys: verified.size, refusedKeys: refused.size };
    },
  };
}

function refusal(reason: InvalidKeyReason): Outcome {
  return { result: { ok: false, reason }, stale: false };
}

function isExpired(key: AuthenticatedKey, now: number): boolean {
  return key.expiresAt !== null && key.expiresAt.getTime() <= now;
}

/** Frozen, deeply: the same object is handed to every request the key authenticates, and a
 * host that changed one (`req.apiKey.ownerId = …`) would otherwise change it for all. */
function toAuthenticatedKey(record: StoredKey): AuthenticatedKey {
  return Object.freeze({
    id: record.id,
    ownerId: record.ownerId,
    name: record.name,
    keyPrefix: record.keyPrefix,
    keySuffix: record.keySuffix,
    createdAt: record.createdAt,
    expiresAt: record.expiresAt,
    scopes: Object.freeze([...record.scopes]),
    metadata: deepFreeze(structuredClone(record.metadata)),
    rateLimit: record.rateLimit && Object.freeze({ ...record.rateLimit }),
    credits:
      record.credits &&
      deepFreeze({
        remaining: record.credits.remaining,
        refill: record.credits.refill && { ...record.credits.refill },
        strict: record.credits.strict,
      }),
    leakedAt: record.leakedAt,
    leakSource: record.leakSource,
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** SHA-256 as a 32-character latin1 ('binary') string: the shortest string form of the
 * digest, so the cheapest to hash as a map key and to keep. */
function digestOf(rawKey: string): string {
  return hash('sha256', rawKey, 'binary');
}

/** `<prefix>_` and the first 4 body characters, as in keyPrefix: safe for a log line. */
function maskedPrefix(rawKey: string): string | undefined {
  const underscore = rawKey.indexOf('_');
  return underscore > 0 ? rawKey.slice(0, underscore + 5) : undefined;
}
