import { hash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import type { InvalidationEvent } from './bus.js';
import { withDeadline } from './deadline.js';
import { KeywardError } from './errors.js';
import { hashKey, verifyKeyHash } from './hashing.js';
import { InvalidationLog } from './invalidation-log.js';
import { BODY_LENGTH, generateKey, generateKeyId, parseKey } from './key-format.js';
import { LastUsedWriter, latest } from './last-used.js';
import { normalizeKeyName } from './names.js';
import {
  type InvalidKeyReason,
  type KeyServiceOptions,
  type ResolvedOptions,
  resolveOptions,
} from './options.js';
import { OwnerLimit } from './owner-limit.js';
import { PositiveCache } from './positive-cache.js';
import { Semaphore } from './semaphore.js';
import { KeyCollisionError, type StoredKey } from './store.js';
import { checkStore } from './store-check.js';

/** A key as its owner sees it: metadata and the masked ends, never the secret. */
export interface ApiKey {
  id: string;
  name: string;
  keyPrefix: string;
  keySuffix: string;
  lastUsedAt: Date | null;
  createdAt: Date;
}

/** Returned once, by `create`: the only time the raw key exists outside the caller. */
export interface CreatedApiKey extends ApiKey {
  rawKey: string;
}

/** The key that authenticated a request (`req.apiKey` / `request.apiKey`). */
export interface AuthenticatedKey {
  id: string;
  ownerId: string;
  name: string;
  keyPrefix: string;
  keySuffix: string;
  createdAt: Date;
}

export type VerifyResult = VerifiedResult | { ok: false; reason: InvalidKeyReason };
type VerifiedResult = { ok: true; key: AuthenticatedKey };

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

function refusal(reason: InvalidKeyReason): Outcome {
  return { result: { ok: false, reason }, stale: false };
}

const keyIdPattern = /^key_[0-9A-Za-z]{1,64}$/;
const MAX_OWNER_ID_LENGTH = 255;
/** Tries at removing a key whose create timed out but landed (backoff up to 30 s: about
 * five minutes in all). */
const ORPHAN_DELETE_ATTEMPTS = 12;
/** How many fresh ids and lookup parts to try when a store reports a collision. */
const INSERT_ATTEMPTS = 3;
/** Keys whose last invalidation is remembered while verifications are in flight; past
 * this, the oldest go and verifications that started before them are not cached. */
const INVALIDATION_LOG_MAX = 10_000;
/** Accounts whose renames in the current minute are counted. */
const RENAME_WINDOW_OWNERS = 10_000;

export type KeyService = ReturnType<typeof createKeyService>;

/**
 * The key service: create, list, rename, revoke and verify, for the HTTP layer and for the
 * host's own code (a dashboard, a script) alike.
 *
 * ```ts
 * const keys = createKeyService({ store: memoryStore() });
 * const { rawKey } = await keys.create('acct_42', 'Production Server');
 * const result = await keys.verify(rawKey); // { ok: true, key: { ownerId: 'acct_42', … } }
 * ```
 *
 * Verification (DESIGN.md): the positive cache (after a length check; a hit needs no
 * parse), the offline format and checksum check, the negative cache, the per-lookup failure
 * budget, one indexed store read, and argon2id under a process-wide bound. Store failures
 * surface as `service_unavailable`: an unverified key is never accepted. Refusals past
 * `refusalsPerSecond` are held `failureDelayMs`, so a flood of bad keys waits on timers.
 */
export function createKeyService(options: KeyServiceOptions) {
  const o = resolveOptions(options);
  const { store } = o;
  const argon2Slots = new Semaphore(o.maxConcurrent, o.maxQueue, o.maxConcurrentHashes);
  // Per account, the create in progress (settled, never rejecting): the next one waits.
  const creating = new Map<string, Promise<void>>();
  const lastUsed = new LastUsedWriter(
    store,
    o.lastUsedFlushIntervalMs,
    o.onError,
    o.storeTimeoutMs,
  );

  const keyLength = o.prefix.length + 1 + BODY_LENGTH;
  // Keyed by the SHA-256 of the raw key, so it holds no usable secret. Its values are the
  // results a hit returns, made once, so a hit allocates nothing.
  const verified = new PositiveCache<VerifiedResult>({
    max: o.cacheMax,
    ttlMs: o.cacheTtlMs,
    onUse: (id, at) => lastUsed.record(id, at),
  });
  const refused = new LRUCache<string, InvalidKeyReason>({
    max: o.negativeCacheMax,
    ttl: o.negativeCacheTtlMs,
  });
  const failures = new LRUCache<string, FailureBudget>({
    max: o.negativeCacheMax,
    ttl: o.cooldownMs,
  });
  // Lookup part → digest of the key last verified with it: that key passes the lookup's
  // cooldown, since nobody else can present it. Bounded like the positive cache, and only
  // verified keys get in.
  const knownGood = new LRUCache<string, string>({ max: o.cacheMax });
  const renames = new OwnerLimit(o.maxRenamesPerMinute, 60_000, RENAME_WINDOW_OWNERS);
  const inFlight = new Map<string, Verification>();
  // Verifications running, in inFlight or not: while there are none, the invalidation log
  // has nobody to answer and is emptied.
  let running = 0;
  const invalidations = new InvalidationLog(INVALIDATION_LOG_MAX);
  let refusalTokens = o.refusalsPerSecond;
  let refusalsRefilledAt = performance.now();

  /** Per key: a verification in flight of another key is still cached. */
  function invalidateLocally(keyId: string, ownerId?: string): void {
    invalidations.record(keyId);
    verified.deleteKey(keyId, ownerId);
  }

  const subscription = o.bus?.subscribe(
    (event: InvalidationEvent) => {
      invalidateLocally(event.keyId, event.ownerId);
      if (event.type === 'revoked') lastUsed.forget(event.keyId);
    },
    {
      // The bus was away and events may have been lost: any key may have been revoked
      // meanwhile, so nothing verified before stays cached, nor is a verification that
      // started before cached when it ends.
      onResync: () => {
        invalidations.recordAll();
        verified.clear();
      },
    },
  );
  // Reported even to a host that never calls ready(); ready() rejects with it too.
  subscription?.catch(o.onError);

  async function publish(event: InvalidationEvent): Promise<void> {
    if (!o.bus) return;
    // The change is durable in the store already; a bus failure only means other
    // instances hold the key until their cache TTL. Reported, not thrown.
    await o.bus.publish(event).catch(o.onError);
  }

  /** A key that is gone from the store: out of every cache, its pending lastUsedAt too. */
  async function dropRevoked(ownerId: string, keyId: string): Promise<void> {
    lastUsed.forget(keyId);
    await dropEverywhere(ownerId, keyId);
  }

  /** Out of this instance's caches and, through the bus, every other's; only where it is
   * cached as `ownerId`'s, so a caller naming another account's key id evicts nothing. */
  async function dropEverywhere(ownerId: string, keyId: string): Promise<void> {
    invalidateLocally(keyId, ownerId);
    await publish({ type: 'revoked', keyId, ownerId });
  }

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
    if (hit !== undefined) return Promise.resolve(hit);
    return verifyUncached(rawKey, digest);
  }

  /** The cache hit of `verify`, synchronously: the key if it is cached (and that use
   * noted), else `undefined`, and the caller goes on to `verify`. Lets a guard answer a
   * warm request with no promise at all. */
  function verifyCached(rawKey: string): AuthenticatedKey | undefined {
    if (typeof rawKey !== 'string' || rawKey.length !== keyLength) return undefined;
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
    if (!stale) verified.set(digest, result, o.nowMs());
    return { result, stale };
  }

  /** `create`, the account's turn come. The cap is checked before hashing, so an account
   * at its cap costs one store read per create, not an argon2 hash on the shared slots;
   * the store's atomic insert stays the authority (another instance may be creating too). */
  async function createKey(ownerId: string, cleanName: string): Promise<CreatedApiKey> {
    // listByOwner rather than a store method of its own: at most maxKeysPerOwner records,
    // read by the owner index, on the management path; a create already reads and writes
    // the store.
    const held = await callStore(() => store.listByOwner(ownerId));
    if (held.length >= o.maxKeysPerOwner) throw new KeywardError('key_limit_reached');
    for (let attempt = 1; ; attempt++) {
      const generated = generateKey(o.prefix);
      const record: StoredKey = {
        id: generateKeyId(),
        ownerId,
        name: cleanName,
        lookup: generated.lookup,
        hash: await argon2Slots.runLow(() => hashKey(generated.rawKey, o.argon2)),
        keyPrefix: generated.keyPrefix,
        keySuffix: generated.keySuffix,
        createdAt: o.now(),
        lastUsedAt: null,
      };
      try {
        const result = await callStore(
          () => store.insert(record, { maxKeysPerOwner: o.maxKeysPerOwner }),
          // The caller was told the create failed, so nobody holds this raw key: remove
          // the row rather than leave a key that counts against the cap forever.
          (late) => {
            if (late.ok) removeOrphan(ownerId, record.id);
          },
        );
        if (!result.ok) throw new KeywardError('key_limit_reached');
        return { ...toApiKey(record), rawKey: generated.rawKey };
      } catch (error) {
        if (!(error instanceof KeyCollisionError)) throw error;
        if (attempt >= INSERT_ATTEMPTS) throw unavailable(error);
      }
    }
  }

  /** Runs `task` once the account's previous create has settled: an account holds at most
   * one hashing slot, and its cap check sees its previous create's insert. */
  function oneAtATime<T>(ownerId: string, task: () => Promise<T>): Promise<T> {
    const result = (creating.get(ownerId) ?? Promise.resolve()).then(task);
    const settled = result.then(
      () => {},
      () => {},
    );
    creating.set(ownerId, settled);
    void settled.then(() => {
      if (creating.get(ownerId) === settled) creating.delete(ownerId);
    });
    return result;
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

  /** Runs a store call with a deadline; any failure becomes `service_unavailable`, with
   * the store's own error kept as `cause` for `onError` and out of every response. */
  function callStore<T>(call: () => Promise<T>, onLateResult?: (value: T) => void): Promise<T> {
    // A store method that throws instead of rejecting fails the same way.
    const work = new Promise<T>((resolve) => resolve(call()));
    return withDeadline(work, o.storeTimeoutMs, 'store call', onLateResult).catch(
      (error: unknown) => {
        throw error instanceof KeyCollisionError ? error : unavailable(error);
      },
    );
  }

  /** Deletes a key whose create was reported as failed, retrying with backoff while the
   * store is still failing (it likely is: the insert was late). */
  function removeOrphan(ownerId: string, id: string, attempt = 1): void {
    store.delete(ownerId, id).catch((error: unknown) => {
      o.onError(error);
      if (attempt >= ORPHAN_DELETE_ATTEMPTS) return;
      const delay = Math.min(1000 * 2 ** (attempt - 1), 30_000);
      setTimeout(() => removeOrphan(ownerId, id, attempt + 1), delay).unref();
    });
  }

  function unavailable(cause: unknown): KeywardError {
    o.onError(cause);
    return new KeywardError('service_unavailable', { cause, retryAfter: 1 });
  }

  function toApiKey(record: StoredKey): ApiKey {
    const lastUsedAt =
      latest(lastUsed.pendingFor(record.id), record.lastUsedAt ?? undefined) ?? null;
    return {
      id: record.id,
      name: record.name,
      keyPrefix: record.keyPrefix,
      keySuffix: record.keySuffix,
      lastUsedAt,
      createdAt: record.createdAt,
    };
  }

  return {
    /** The options in force, defaults filled in. */
    options: o as Readonly<ResolvedOptions>,

    /** Resolves once the invalidation bus (if any) is listening; rejects if it cannot
     * subscribe, since this instance would then keep revoked keys until their cache TTL. */
    async ready(): Promise<void> {
      await checkStore(store, o.storeTimeoutMs);
      try {
        await subscription;
      } catch (cause) {
        const reason = cause instanceof Error ? cause.message : String(cause);
        throw new KeywardError('service_unavailable', {
          message: `keyward: the invalidation bus could not subscribe (${reason}); revocations made on other instances would not reach this one.`,
          cause,
        });
      }
    },

    /**
     * Creates a key for `ownerId`. The raw key is in the result and nowhere else: it is
     * returned only after the store confirmed the write. Throws `invalid_request` for a bad
     * name, `key_limit_reached` at the cap, `service_unavailable` if the store fails.
     */
    async create(ownerId: string, name: unknown): Promise<CreatedApiKey> {
      assertOwnerId(ownerId);
      const cleanName = normalizeKeyName(name);
      return oneAtATime(ownerId, () => createKey(ownerId, cleanName));
    },

    /** An account's keys, newest first, with lastUsedAt as this instance knows it. */
    async list(ownerId: string): Promise<ApiKey[]> {
      assertOwnerId(ownerId);
      const records = await callStore(() => store.listByOwner(ownerId));
      return records.map(toApiKey);
    },

    /** The renamed key, or `null` if the account has no key with that id. Throws
     * `rate_limited` past `maxRenamesPerMinute` for the account. */
    async rename(ownerId: string, id: string, name: unknown): Promise<ApiKey | null> {
      assertOwnerId(ownerId);
      const cleanName = normalizeKeyName(name);
      if (!isKeyId(id)) return null;
      const retryAfter = renames.take(ownerId);
      if (retryAfter !== undefined) throw new KeywardError('rate_limited', { retryAfter });
      const record = await callStore(() => store.rename(ownerId, id, cleanName));
      if (!record) return null;
      invalidateLocally(id);
      await publish({ type: 'renamed', keyId: id });
      return toApiKey(record);
    },

    /** Deletes the key for good; `false` if the account has no key with that id. The key
     * is refused from the next request on, on this instance at once and on others as soon
     * as the bus delivers (or their cache TTL passes). */
    async revoke(ownerId: string, id: string): Promise<boolean> {
      assertOwnerId(ownerId);
      if (!isKeyId(id)) return false;
      let deleted: boolean;
      try {
        deleted = await callStore(
          () => store.delete(ownerId, id),
          // Landed after the caller was answered: a verification since may have cached it
          // again, here or elsewhere.
          (late) => {
            if (late) void dropRevoked(ownerId, id);
          },
        );
      } catch (error) {
        // The delete may have landed (an answer lost) or still land (a timeout): the key
        // leaves every cache now rather than live on wherever it was cached.
        await dropEverywhere(ownerId, id);
        throw error;
      }
      if (!deleted) return false;
      await dropRevoked(ownerId, id);
      return true;
    },

    /**
     * Checks a presented key. `{ ok: false, reason }` for every kind of bad key (the
     * reason is for logs, not for the client); throws `service_unavailable` when the
     * store cannot answer or too many verifications are queued.
     */
    verify,

    /** `verify`'s cache hit, synchronously; `undefined` when the key is not cached. */
    verifyCached,

    /** Drops a key from this instance's caches, as a bus event would. */
    invalidate(keyId: string): void {
      invalidateLocally(keyId);
    },

    /** Writes pending lastUsedAt values now. */
    flushLastUsed(): Promise<void> {
      return lastUsed.flush();
    },

    /** Empties the key cache (nothing would expire it any more), stops the flush timer and
     * the bus subscription, and writes what is pending. Rejects if that last write fails,
     * so the host knows it was not saved. */
    async close(): Promise<void> {
      verified.close();
      const unsubscribe = await subscription?.catch(() => undefined);
      await unsubscribe?.();
      await lastUsed.close();
    },

    /** Sizes of the in-memory structures, for metrics. */
    stats() {
      return {
        cachedKeys: verified.size,
        refusedKeys: refused.size,
        pendingLastUsed: lastUsed.size,
        argon2Queue: argon2Slots.pending,
      };
    },
  };
}

/** Frozen: the same object is handed to every request the key authenticates, and a host
 * that changed one (`req.apiKey.ownerId = …`) would otherwise change it for all of them. */
function toAuthenticatedKey(record: StoredKey): AuthenticatedKey {
  return Object.freeze({
    id: record.id,
    ownerId: record.ownerId,
    name: record.name,
    keyPrefix: record.keyPrefix,
    keySuffix: record.keySuffix,
    createdAt: record.createdAt,
  });
}

/** SHA-256 as a 32-character latin1 ('binary') string: the shortest string form of the digest, so the
 * cheapest to hash as a map key and to keep. */
function digestOf(rawKey: string): string {
  return hash('sha256', rawKey, 'binary');
}

/** `<prefix>_` and the first 4 body characters, as in keyPrefix: safe for a log line. */
function maskedPrefix(rawKey: string): string | undefined {
  const underscore = rawKey.indexOf('_');
  return underscore > 0 ? rawKey.slice(0, underscore + 5) : undefined;
}

export function isKeyId(value: unknown): value is string {
  return typeof value === 'string' && keyIdPattern.test(value);
}

function assertOwnerId(ownerId: unknown): asserts ownerId is string {
  if (typeof ownerId !== 'string' || ownerId.length === 0 || ownerId.length > MAX_OWNER_ID_LENGTH) {
    throw new TypeError(
      `keyward: ownerId must be a non-empty string of at most ${MAX_OWNER_ID_LENGTH} characters.`,
    );
  }
}
