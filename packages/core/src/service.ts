import { hash } from 'node:crypto';
import { channel as diagnosticsChannel } from 'node:diagnostics_channel';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import {
  busRetryDelay,
  INVALIDATION_CHANNEL,
  type InvalidationDiagnostic,
  type InvalidationEvent,
} from './bus.js';
import { withDeadline } from './deadline.js';
import { KeywardError } from './errors.js';
import { hashKey, verifyKeyHash } from './hashing.js';
import {
  holdsScopes,
  parseCreateExpiry,
  parseCredits,
  parseExpiresAt,
  parseMetadata,
  parseRateLimit,
  parseRollGrace,
  parseScopes,
  refillPeriod,
} from './key-fields.js';
import { generateKey, generateKeyId, parseKey } from './key-format.js';
import { LastUsedWriter, latest } from './last-used.js';
import type { LeakOutcome, LeakReport } from './leak.js';
import { createLimiter, type LimitedKey, type LimitVerdict } from './limits.js';
import { normalizeKeyName } from './names.js';
import { type KeyServiceOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { OwnerLimit } from './owner-limit.js';
import { Semaphore } from './semaphore.js';
import {
  type Credits,
  type KeyChanges,
  KeyCollisionError,
  type KeyMetadata,
  type RateLimit,
  type StoredCredits,
  type StoredKey,
} from './store.js';
import { checkStore } from './store-check.js';
import { type AuthenticatedKey, createVerifier, type VerifyResult } from './verifier.js';

export type { AuthenticatedKey, LimitVerdict, VerifyResult };

/** A key as its owner sees it: metadata and the masked ends, never the secret. */
export interface ApiKey {
  id: string;
  name: string;
  keyPrefix: string;
  keySuffix: string;
  lastUsedAt: Date | null;
  createdAt: Date;
  /** From this instant on the key is refused; `null`: never. */
  expiresAt: Date | null;
  /** What the key may do; `['*']` is everything. */
  scopes: string[];
  /** The host's own JSON object. */
  metadata: KeyMetadata;
  /** Id of the key that created this one over HTTP; `null` when made by the host's code. */
  createdBy: string | null;
  /** At most `limit` requests per epoch-aligned window of `windowSec`; `null`: none. */
  rateLimit: RateLimit | null;
  /** The credit balance (as this instance knows it: the store's and this instance's
   * unspent lease) and its refill; `null`: none. */
  credits: Credits | null;
  /** When a leak of the key was confirmed and it was quarantined; `null` otherwise. */
  leakedAt: Date | null;
  /** Who reported that leak: `github`, `report`, or the host's own label. */
  leakSource: string | null;
}

/** Returned once, by `create` and `roll`: the only time the raw key exists outside the
 * caller. */
export interface CreatedApiKey extends ApiKey {
  rawKey: string;
}

/** `create`'s options. Values are checked as the HTTP API checks them (`invalid_request`). */
export interface CreateOptions {
  /** An ISO 8601 instant with a zone (or a Date), in the future, at most 10 years ahead. */
  expiresAt?: unknown;
  /** Whole seconds from now, 60 to 315,360,000. Not with `expiresAt`. */
  expiresIn?: unknown;
  /** 1 to 50 unique scopes, each `*` or 1–64 of `[A-Za-z0-9_.:-]`.
   * @default the service's `defaultScopes` (['*']) */
  scopes?: unknown;
  /** A JSON object, at most 2 KiB as compact JSON and 3 levels deep. @default {} */
  metadata?: unknown;
  /** Id of the key creating this one (over HTTP), so a cascade revocation of it takes this
   * one too. Must be a key of the same owner. @default null */
  createdBy?: string | null;
  /** When set, every requested scope must be held here (`*` holds all), else
   * `insufficient_scope`: the creating key's scopes, so no key grants more than it has. */
  grantableScopes?: readonly string[];
  /** `{ limit: 1..1,000,000, windowSec: 1..86,400 }` or null. @default null */
  rateLimit?: unknown;
  /** `{ remaining: 0..2^31-1, refill?: { amount, every: 'day' | 'month' } | null, strict?:
   * boolean }` or null. @default null */
  credits?: unknown;
}

/** `update`'s changes: at least one of them. */
export interface UpdateFields {
  name?: unknown;
  /** Replaces the metadata whole. */
  metadata?: unknown;
  /** Earlier than the key's current expiry, or where it had none: a key's life is never
   * extended. */
  expiresAt?: unknown;
  /** Refused: scopes are fixed at creation (roll to change them). */
  scopes?: unknown;
  /** Replaces the limit; `null` removes it. */
  rateLimit?: unknown;
  /** Replaces the credits, balance included; `null` removes them. */
  credits?: unknown;
}

export interface RollOptions {
  /** Seconds the old key keeps working, 0 to 604,800. @default 86400 */
  expiresIn?: unknown;
  /** Scopes of the new key, as narrow as or narrower than the old key's. @default the old
   * key's */
  scopes?: unknown;
  /** As in `create`: the rolling key's scopes, which the new key may not exceed. */
  grantableScopes?: readonly string[];
}

/**
 * The key service: create, list, update, roll, revoke and verify, for the HTTP layer and
 * for the host's own code (sign-up, a dashboard, a script) alike.
 *
 * ```ts
 * const keys = createKeyService({ store: memoryStore() });
 * const { rawKey } = await keys.create('acct_42', 'Production Server');
 * const result = await keys.verify(rawKey); // { ok: true, key: { ownerId: 'acct_42', … } }
 * ```
 */
export interface KeyService {
  /** The options in force, defaults filled in. */
  readonly options: Readonly<ResolvedOptions>;
  /** Resolves once the store answers its readiness check and the invalidation bus (if any)
   * is listening; rejects with a message that names the fix otherwise. */
  ready(): Promise<void>;
  /**
   * Creates a key for `ownerId`. The raw key is in the result and nowhere else: it is
   * returned only after the store confirmed the write. Throws `invalid_request` for a bad
   * field, `insufficient_scope` for a scope not grantable, `key_limit_reached` at the cap,
   * `service_unavailable` if the store fails.
   */
  create(ownerId: string, name: unknown, options?: CreateOptions): Promise<CreatedApiKey>;
  /** An account's keys, newest first (expired ones too), with lastUsedAt as this instance
   * knows it. */
  list(ownerId: string): Promise<ApiKey[]>;
  /** Renames the key, replaces its metadata, or brings its expiry forward; `null` if the
   * account has no key with that id. Throws `invalid_request` for bad or no changes, and
   * `rate_limited` past `maxRenamesPerMinute` for the account. */
  update(ownerId: string, id: string, changes: UpdateFields): Promise<ApiKey | null>;
  /** `update` of the name alone. */
  rename(ownerId: string, id: string, name: unknown): Promise<ApiKey | null>;
  /**
   * Replaces a key without downtime: a new key (same name, metadata, expiry; the old key's
   * scopes or narrower) and the old one's expiry brought to now + `expiresIn` at the latest,
   * in one step. `null` if the account has no such key or it has expired. With
   * `expiresIn: 0` the old key is refused at once on every instance, as a revocation is.
   */
  roll(ownerId: string, id: string, options?: RollOptions): Promise<CreatedApiKey | null>;
  /** Deletes the key for good; `false` if the account has no key with that id. The key
   * is refused from the next request on, on this instance at once and on others as soon
   * as the bus delivers (or their cache TTL passes). */
  revoke(ownerId: string, id: string): Promise<boolean>;
  /** Revokes the key and every key it created, transitively, in one step; the revoked
   * ids, the named one first, or `[]` if the account has no key with that id. */
  revokeCascade(ownerId: string, id: string): Promise<string[]>;
  /**
   * Handles a report that `rawKey` was published (docs/design.md, "Leak response"). The
   * checksum is checked first, offline; then the lookup part is read from the store and
   * the secret checked with argon2 (on the low-priority slots), so only a real key is acted
   * on. A real key gets the service's leak policy, on every instance through the bus, and
   * `onLeak` is called; the outcome says what was done. `null` for anything that is not a
   * key of this service (a false positive): nothing changes. A repeated report of a key
   * already handled changes nothing and calls no `onLeak`. Throws `service_unavailable` if
   * the store fails.
   */
  reportLeak(rawKey: string, report: LeakReport): Promise<LeakOutcome | null>;
  /**
   * Checks a presented key. `{ ok: false, reason }` for every kind of bad key (the reason
   * is for logs, not for the client); throws `service_unavailable` when the store cannot
   * answer or too many verifications are queued.
   */
  verify(rawKey: string): Promise<VerifyResult>;
  /** `verify`'s cache hit, synchronously; `undefined` when the key is not cached. */
  verifyCached(rawKey: string): AuthenticatedKey | undefined;
  /**
   * Spends `cost` of a verified key's rate limit and credits (docs/design.md, "Rate limits
   * and credits"): synchronously from this instance's leases when they cover it, else
   * after claiming one from the store. Rejects with `service_unavailable` when the store
   * cannot answer: a limited key is never let through unchecked.
   */
  checkLimits(key: LimitedKey, cost: number): LimitVerdict | Promise<LimitVerdict>;
  /** The `RateLimit-Policy` and `RateLimit` fields for an answer to `key` that spends
   * nothing (refused before the limit check, e.g. for scope); `undefined` without a
   * rate limit. */
  limitHeaders(key: LimitedKey): Record<string, string> | undefined;
  /** Puts back what `checkLimits` took for a request that was refused after all (refused
   * requests cost nothing): the management routes do it for an answer of 400 and up. A
   * host route may too. Strict credits are not put back. */
  refundLimits(key: LimitedKey, cost: number): void;
  /** Drops a key from this instance's caches, as a bus event would. */
  invalidate(keyId: string): void;
  /** Writes pending lastUsedAt values now. */
  flushLastUsed(): Promise<void>;
  /** Empties the key cache (nothing would expire it any more), stops the flush timer and
   * the bus subscription, and writes what is pending. Rejects if that last write fails,
   * so the host knows it was not saved. */
  close(): Promise<void>;
  /** Sizes of the in-memory structures, for metrics. */
  stats(): {
    cachedKeys: number;
    refusedKeys: number;
    pendingLastUsed: number;
    argon2Queue: number;
    /** What the bus delivered (docs/design.md, "Invalidation log"). */
    invalidation: InvalidationStats;
  };
}

/** Leaked keys already handled, remembered by the SHA-256 of the raw key (no usable
 * secret): a repeated alert is answered as a true positive with no store work, even once
 * a revoked key is gone from the store. */
const HANDLED_LEAKS_MAX = 10_000;
export interface InvalidationStats {
  /** How old this instance's view of the invalidation log is, in ms: `null` without a log
   * bus, `Infinity` before it first caught up. Past `maxStalenessMs`, cache hits are
   * checked against the store. */
  viewAgeMs: number | null;
  /** Events applied from the bus since the service was made. */
  applied: number;
  /** Times the cache was emptied because events may have been lost. */
  resyncs: number;
  /** Revocation lag, publication to application, over the last 1024 events that carried
   * their publication time, in ms (`null` before any). */
  lagP50Ms: number | null;
  lagP99Ms: number | null;
}

/** Events whose lag is kept for the percentiles in stats(). */
const LAG_SAMPLES = 1024;
/** Events a service sends again at once, at most, after their publish failed. */
const MAX_REPUBLISHING = 10_000;
const invalidationDiagnostics = diagnosticsChannel(INVALIDATION_CHANNEL);

const keyIdPattern = /^key_[0-9A-Za-z]{1,64}$/;
const MAX_OWNER_ID_LENGTH = 255;
/** Tries at removing a key whose create timed out but landed (backoff up to 30 s: about
 * five minutes in all). */
const ORPHAN_DELETE_ATTEMPTS = 12;
/** How many fresh ids and lookup parts to try when a store reports a collision. */
const INSERT_ATTEMPTS = 3;
/** Accounts whose updates in the current minute are counted. */
const RENAME_WINDOW_OWNERS = 10_000;

/** Makes the key service: the management side here, the guard's side in `verifier.ts`. */
export function createKeyService(options: KeyServiceOptions): KeyService {
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
  const verifier = createVerifier({ options: o, argon2Slots, lastUsed, callStore });
  const renames = new OwnerLimit(o.maxRenamesPerMinute, 60_000, RENAME_WINDOW_OWNERS);
  const limiter = createLimiter({
    store,
    callStore,
    nowMs: o.nowMs,
    onError: o.onError,
    maxKeys: o.cacheMax,
    invalidateKey: (id) => verifier.invalidate(id),
  });

  const lags = new Float64Array(LAG_SAMPLES);
  let applied = 0;
  let lagged = 0;
  let resyncs = 0;
  const subscription = o.bus?.subscribe(
    (event: InvalidationEvent) => {
      verifier.invalidate(event.keyId, event.ownerId);
      limiter.forget(event.keyId);
      if (event.type === 'revoked') lastUsed.forget(event.keyId);
      applied++;
      const lagMs = event.publishedAt === undefined ? null : Date.now() - event.publishedAt;
      if (lagMs !== null) lags[lagged++ % LAG_SAMPLES] = lagMs;
      if (invalidationDiagnostics.hasSubscribers) {
        const message: InvalidationDiagnostic = {
          kind: 'applied',
          type: event.type,
          keyId: event.keyId,
          lagMs,
        };
        invalidationDiagnostics.publish(message);
      }
    },
    {
      onResync: () => {
        verifier.invalidateAll();
        resyncs++;
        if (invalidationDiagnostics.hasSubscribers) {
          invalidationDiagnostics.publish({ kind: 'resync' } satisfies InvalidationDiagnostic);
        }
      },
      onCaughtUp: (asOf) => verifier.caughtUp(asOf),
    },
  );
  // Reported even to a host that never calls ready(); ready() rejects with it too.
  subscription?.catch(o.onError);

  // Events whose publish failed and are being sent again in the background.
  let republishing = 0;
  let closed = false;

  async function publish(event: InvalidationEvent): Promise<void> {
    const bus = o.bus;
    if (!bus) return;
    // The change is durable in the store already: a bus failure is reported, not thrown.
    // The event is not dropped, though: until it is published, other instances keep the
    // key cached (to their cache TTL on a pub/sub bus, and, on a log bus, beyond its
    // maxStalenessMs, since the log they read says nothing happened). So it is sent again,
    // with backoff, until it goes through or this service closes.
    try {
      await bus.publish(event);
      return;
    } catch (error) {
      o.onError(
        new Error(
          `keyward: could not publish the ${event.type} event of ${event.keyId}; sending it again until it goes through.`,
          { cause: error },
        ),
      );
    }
    if (republishing >= MAX_REPUBLISHING) {
      o.onError(
        new Error(
          `keyward: ${MAX_REPUBLISHING} events are waiting to be published; the ${event.type} event of ${event.keyId} is dropped (other instances hold the key until their cache TTL).`,
        ),
      );
      return;
    }
    republishing++;
    void (async () => {
      try {
        for (let attempt = 0; !closed; attempt++) {
          await sleep(busRetryDelay(attempt), undefined, { ref: false });
          if (closed) break;
          try {
            await bus.publish(event);
            return;
          } catch {
            // Reported once, above; tried again after a longer pause.
          }
        }
        o.onError(
          new Error(
            `keyward: closed before the ${event.type} event of ${event.keyId} could be published.`,
          ),
        );
      } finally {
        republishing--;
      }
    })();
  }

  /** A key that changed: out of this instance's caches and, through the bus, every
   * other's; only where it is cached as `ownerId`'s, so a caller naming another account's
   * key id (in a revoke the store could not confirm) evicts nothing. */
  async function dropEverywhere(
    ownerId: string,
    keyId: string,
    type: InvalidationEvent['type'],
  ): Promise<void> {
    verifier.invalidate(keyId, ownerId);
    limiter.forget(keyId);
    await publish({ type, keyId, ownerId });
  }

  /** A key that is gone from the store: out of every cache, its pending lastUsedAt too. */
  async function dropRevoked(ownerId: string, keyId: string): Promise<void> {
    lastUsed.forget(keyId);
    await dropEverywhere(ownerId, keyId, 'revoked');
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

  function unavailable(cause: unknown): KeywardError {
    o.onError(cause);
    return new KeywardError('service_unavailable', { cause, retryAfter: 1 });
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

  /** A fresh key record and its raw key; the hash runs on the low-priority argon2 slots. */
  async function newKey(fields: NewKeyFields): Promise<{ record: StoredKey; rawKey: string }> {
    const generated = generateKey(o.prefix);
    const record: StoredKey = {
      ...fields,
      id: generateKeyId(),
      lookup: generated.lookup,
      hash: await argon2Slots.runLow(() => hashKey(generated.rawKey, o.argon2)),
      keyPrefix: generated.keyPrefix,
      keySuffix: generated.keySuffix,
      createdAt: o.now(),
      lastUsedAt: null,
      leakedAt: null,
      leakSource: null,
    };
    return { record, rawKey: generated.rawKey };
  }

  /** Tries a write of a new key up to INSERT_ATTEMPTS times with fresh ids and lookup
   * parts while the store reports collisions (astronomically rare, but never an overwrite). */
  async function withFreshIds<T>(attempt: () => Promise<T>): Promise<T> {
    for (let tries = 1; ; tries++) {
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof KeyCollisionError)) throw error;
        if (tries >= INSERT_ATTEMPTS) throw unavailable(error);
      }
    }
  }

  /** `create`, the account's turn come. The cap is checked before hashing, so an account
   * at its cap costs one store read per create, not an argon2 hash on the shared slots;
   * the store's atomic insert stays the authority (another instance may be creating too). */
  async function createKey(fields: NewKeyFields): Promise<CreatedApiKey> {
    // listByOwner rather than a store method of its own: at most maxKeysPerOwner records,
    // read by the owner index, on the management path; a create already reads and writes
    // the store.
    const held = await callStore(() => store.listByOwner(fields.ownerId));
    if (held.length >= o.maxKeysPerOwner) throw new KeywardError('key_limit_reached');
    return withFreshIds(async () => {
      const { record, rawKey } = await newKey(fields);
      const result = await callStore(
        () => store.insert(record, { maxKeysPerOwner: o.maxKeysPerOwner }),
        // The caller was told the create failed, so nobody holds this raw key: remove
        // the row rather than leave a key that counts against the cap forever.
        (late) => {
          if (late.ok) removeOrphan(record.ownerId, record.id);
        },
      );
      if (!result.ok) throw new KeywardError('key_limit_reached');
      await ensureCreatorLives(record);
      return { ...toApiKey(record), rawKey };
    });
  }

  /**
   * A key made by another key (`createdBy`) must not outlive a cascade revocation of its
   * creator that landed while it was being made: such a cascade could not see it, and a
   * leaked key could otherwise mint keys that survive. Every store orders a tree delete and
   * an insert of the same owner, so reading after the insert tells: if the creator is gone,
   * the new key goes too (its raw key was never handed out) and the request is refused as
   * its key is.
   */
  async function ensureCreatorLives(record: StoredKey): Promise<void> {
    if (record.createdBy === null) return;
    const creator = record.createdBy;
    let alive: boolean;
    try {
      const held = await callStore(() => store.listByOwner(record.ownerId));
      alive = held.some((key) => key.id === creator);
    } catch (error) {
      removeOrphan(record.ownerId, record.id);
      throw error;
    }
    if (alive) return;
    // Gone before the refusal answers, unless the store fails meanwhile: then in the
    // background, with retries (nobody holds the raw key either way).
    await callStore(() => store.delete(record.ownerId, record.id)).catch(() =>
      removeOrphan(record.ownerId, record.id),
    );
    throw new KeywardError('invalid_api_key');
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

  async function findOwned(ownerId: string, id: string): Promise<StoredKey | undefined> {
    const records = await callStore(() => store.listByOwner(ownerId));
    return records.find((record) => record.id === id);
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
      expiresAt: record.expiresAt,
      scopes: record.scopes,
      metadata: record.metadata,
      createdBy: record.createdBy,
      rateLimit: record.rateLimit && { ...record.rateLimit },
      credits: record.credits && {
        remaining: shownBalance(record.credits, record.id),
        refill: record.credits.refill && { ...record.credits.refill },
        strict: record.credits.strict,
      },
      leakedAt: record.leakedAt,
      leakSource: record.leakSource,
    };
  }

  /** The balance as this instance knows it: the store's, plus the lease held here, or the
   * refill amount when a refill is due that no claim has applied yet. */
  function shownBalance(credits: StoredCredits, id: string): number {
    const { refill } = credits;
    if (refill && credits.resetAt < refillPeriod(refill.every, o.nowMs()).start) {
      return refill.amount;
    }
    return credits.remaining + limiter.creditsHeld(id);
  }

  /** Credits as a store keeps them: the balance counts as set now. */
  function storedCredits(credits: Credits | null): StoredCredits | null {
    return credits && { ...credits, resetAt: o.nowMs() };
  }

  const handledLeaks = new LRUCache<string, LeakOutcome>({ max: HANDLED_LEAKS_MAX });

  /** Confirms that `rawKey` is a key of this service: its record, or `null`. */
  async function findRealKey(rawKey: string): Promise<StoredKey | null> {
    const parsed = typeof rawKey === 'string' ? parseKey(rawKey, o.prefix) : null;
    if (!parsed) return null;
    const record = await callStore(() => store.findByLookup(parsed.lookup));
    if (!record) return null;
    // Low priority: a flood of reports waits behind the guard's verifications.
    const real = await argon2Slots.runLow(() => verifyKeyHash(record.hash, rawKey));
    return real ? record : null;
  }

  async function applyLeakPolicy(record: StoredKey, report: LeakReport): Promise<boolean> {
    const { ownerId, id } = record;
    switch (o.leakPolicy) {
      case 'revoke':
        return (await service.revokeCascade(ownerId, id)).length > 0;
      case 'quarantine': {
        if (record.leakedAt !== null) return false;
        const now = o.now();
        const updated = await callStore(() =>
          store.update(ownerId, id, {
            expiresAt: new Date(now.getTime() + o.quarantineGraceSeconds * 1000),
            leak: { at: now, source: report.source },
          }),
        );
        if (!updated) return false;
        // As a revocation is: cached copies carry the old expiry and no mark.
        await dropEverywhere(ownerId, id, 'updated');
        return true;
      }
      case 'notify':
        return true;
    }
  }

  const service: KeyService = {
    options: o,

    async ready() {
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

    async create(ownerId, name, options = {}) {
      assertOwnerId(ownerId);
      const cleanName = normalizeKeyName(name);
      const expiresAt = parseCreateExpiry(
        {
          expiresAt:
            options.expiresAt instanceof Date ? options.expiresAt.toISOString() : options.expiresAt,
          expiresIn: options.expiresIn,
        },
        o.now(),
      );
      const scopes =
        options.scopes === undefined ? [...o.defaultScopes] : parseScopes(options.scopes);
      const metadata = options.metadata === undefined ? {} : parseMetadata(options.metadata);
      if (options.grantableScopes && !holdsScopes(options.grantableScopes, scopes)) {
        throw new KeywardError('insufficient_scope', {
          message: 'A key cannot grant a scope it does not hold.',
        });
      }
      const createdBy = options.createdBy ?? null;
      const rateLimit = options.rateLimit === undefined ? null : parseRateLimit(options.rateLimit);
      const credits = storedCredits(
        options.credits === undefined ? null : parseCredits(options.credits),
      );
      return oneAtATime(ownerId, () =>
        createKey({
          ownerId,
          name: cleanName,
          expiresAt,
          scopes,
          metadata,
          createdBy,
          rateLimit,
          credits,
        }),
      );
    },

    async list(ownerId) {
      assertOwnerId(ownerId);
      const records = await callStore(() => store.listByOwner(ownerId));
      return records.map(toApiKey);
    },

    async update(ownerId, id, fields) {
      assertOwnerId(ownerId);
      const changes = parseUpdate(fields, o.now());
      if (changes.credits !== undefined) changes.credits = storedCredits(changes.credits);
      if (!isKeyId(id)) return null;
      const retryAfter = renames.take(ownerId);
      if (retryAfter !== undefined) throw new KeywardError('rate_limited', { retryAfter });
      if (changes.expiresAt !== undefined) {
        // The store keeps the earlier of the two anyway; asking first is what lets a later
        // date answer 400 instead of being quietly ignored.
        const current = await findOwned(ownerId, id);
        if (!current) return null;
        if (current.expiresAt !== null && changes.expiresAt > current.expiresAt) {
          throw new KeywardError('invalid_request', {
            message: '`expiresAt` can only move earlier: a key’s life is never extended.',
          });
        }
      }
      const record = await callStore(() => store.update(ownerId, id, changes));
      if (!record) return null;
      // An expiry brought forward is 'expired-early' on a log bus: log buses came with open
      // types, so every instance reading one parses it. On a pub/sub bus it stays
      // 'updated', which instances of earlier versions (that refuse a type they do not
      // know, and would keep the key cached) understand (docs/design.md, "Invalidation log").
      const early = changes.expiresAt !== undefined && o.bus?.vouchesForView === true;
      await dropEverywhere(ownerId, id, early ? 'expired-early' : 'updated');
      return toApiKey(record);
    },

    rename(ownerId, id, name) {
      return service.update(ownerId, id, { name });
    },

    async roll(ownerId, id, options = {}) {
      assertOwnerId(ownerId);
      const grace = parseRollGrace(options.expiresIn);
      const requested = options.scopes === undefined ? undefined : parseScopes(options.scopes);
      if (!isKeyId(id)) return null;
      return oneAtATime(ownerId, async () => {
        const old = await findOwned(ownerId, id);
        const now = o.now();
        if (!old || (old.expiresAt !== null && old.expiresAt <= now)) return null;
        const scopes = requested ?? old.scopes;
        if (
          !holdsScopes(old.scopes, scopes) ||
          (options.grantableScopes && !holdsScopes(options.grantableScopes, scopes))
        ) {
          throw new KeywardError('insufficient_scope', {
            message: 'A rolled key cannot hold a scope the old key (or the caller) does not.',
          });
        }
        const rolled = await withFreshIds(async () => {
          const { record, rawKey } = await newKey({
            ownerId,
            name: old.name,
            expiresAt: old.expiresAt,
            scopes,
            metadata: old.metadata,
            createdBy: old.createdBy,
            // The store moves the balance itself, atomically (docs/design.md, "Changes,
            // roll, revoke, expiry"); this copy only says the new key has credits.
            rateLimit: old.rateLimit,
            credits: old.credits,
          });
          // What this instance holds of the old key's balance goes back first, so the
          // store moves all of it.
          await limiter.release(id);
          const result = await callStore(() =>
            store.roll(ownerId, id, record, {
              previousExpiresAt: new Date(now.getTime() + grace * 1000),
              now,
              maxKeysPerOwner: o.maxKeysPerOwner,
            }),
          );
          if (!result.ok) {
            if (result.reason === 'limit_reached') throw new KeywardError('key_limit_reached');
            return null;
          }
          // No creator check here: the successor's creator is the old key's, which may
          // have been revoked long ago (alone, not by cascade). A cascade that races the
          // roll deletes the old key too, and the store's atomic roll finds it gone.
          // The store moved the balance: the answer shows what it moved.
          const moved = record.credits
            ? ((await findOwned(ownerId, record.id).catch(() => undefined)) ?? record)
            : record;
          return { ...toApiKey(moved), rawKey };
        });
        // Cached copies of the old key carry its old expiry: every instance reads it again.
        if (rolled) await dropEverywhere(ownerId, id, 'rolled');
        return rolled;
      });
    },

    async revoke(ownerId, id) {
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
        await dropEverywhere(ownerId, id, 'revoked');
        throw error;
      }
      if (!deleted) return false;
      await dropRevoked(ownerId, id);
      return true;
    },

    async revokeCascade(ownerId, id) {
      assertOwnerId(ownerId);
      if (!isKeyId(id)) return [];
      let revoked: string[];
      try {
        revoked = await callStore(
          () => store.deleteTree(ownerId, id),
          (late) => {
            for (const keyId of late) void dropRevoked(ownerId, keyId);
          },
        );
      } catch (error) {
        // Which descendants went is unknown; the named key at least leaves every cache.
        await dropEverywhere(ownerId, id, 'revoked');
        throw error;
      }
      await Promise.all(revoked.map((keyId) => dropRevoked(ownerId, keyId)));
      return revoked;
    },

    async reportLeak(rawKey, report) {
      const digest = typeof rawKey === 'string' ? hash('sha256', rawKey, 'hex') : '';
      const known = handledLeaks.get(digest);
      if (known) return { ...known, firstReport: false };
      const record = await findRealKey(rawKey);
      if (!record) return null;
      const firstReport = await applyLeakPolicy(record, report);
      const outcome: LeakOutcome = { keyId: record.id, action: o.leakPolicy, firstReport };
      handledLeaks.set(digest, outcome);
      if (firstReport) {
        try {
          await o.onLeak({
            keyId: record.id,
            ownerId: record.ownerId,
            url: report.url ?? null,
            source: report.source,
            action: o.leakPolicy,
          });
        } catch (error) {
          o.onError(error);
        }
      }
      return outcome;
    },

    verify: verifier.verify,
    verifyCached: verifier.verifyCached,
    checkLimits: limiter.check,
    limitHeaders: limiter.headersOf,
    refundLimits: limiter.refund,

    invalidate(keyId) {
      verifier.invalidate(keyId);
    },

    flushLastUsed() {
      return lastUsed.flush();
    },

    async close() {
      closed = true;
      verifier.close();
      const unsubscribe = await subscription?.catch(() => undefined);
      await unsubscribe?.();
      // Unspent leases go back; a failure is reported, and the rest still closes.
      await limiter.close();
      await lastUsed.close();
    },

    stats() {
      const samples = lags.slice(0, Math.min(lagged, LAG_SAMPLES)).sort();
      return {
        ...verifier.stats(),
        pendingLastUsed: lastUsed.size,
        argon2Queue: argon2Slots.pending,
        invalidation: {
          viewAgeMs: verifier.viewAgeMs(),
          applied,
          resyncs,
          lagP50Ms: percentile(samples, 0.5),
          lagP99Ms: percentile(samples, 0.99),
        },
      };
    },
  };
  return service;
}

type NewKeyFields = Pick<
  StoredKey,
  'ownerId' | 'name' | 'expiresAt' | 'scopes' | 'metadata' | 'createdBy' | 'rateLimit' | 'credits'
>;

/** The `q` quantile of sorted samples (nearest rank); `null` when there are none. */
function percentile(sorted: Float64Array, q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? null;
}

/** Checks an update's fields, as the HTTP API does: at least one change, each valid. */
function parseUpdate(fields: UpdateFields, now: Date): KeyChanges {
  if (fields.scopes !== undefined) {
    throw new KeywardError('invalid_request', {
      message: 'Scopes are fixed when a key is made: roll the key to change them.',
    });
  }
  const changes: KeyChanges = {};
  if (fields.name !== undefined) changes.name = normalizeKeyName(fields.name);
  if (fields.metadata !== undefined) changes.metadata = parseMetadata(fields.metadata);
  if (fields.expiresAt !== undefined) {
    const value =
      fields.expiresAt instanceof Date ? fields.expiresAt.toISOString() : fields.expiresAt;
    changes.expiresAt = parseExpiresAt(value, now);
  }
  if (fields.rateLimit !== undefined) changes.rateLimit = parseRateLimit(fields.rateLimit);
  if (fields.credits !== undefined) {
    // Given its resetAt by the caller, which owns the clock.
    changes.credits = parseCredits(fields.credits) as StoredCredits | null;
  }
  if (Object.keys(changes).length === 0) {
    throw new KeywardError('invalid_request', {
      message: 'Give at least one of `name`, `metadata`, `expiresAt`, `rateLimit` or `credits`.',
    });
  }
  return changes;
}

export function isKeyId(value: unknown): value is string {
  return typeof value === 'string' && keyIdPattern.test(value);
}

function assertOwnerId(ownerId: unknown): asserts ownerId is string {
  if (
    typeof ownerId !== 'string' ||
    ownerId.length === 0 ||
    ownerId.length > MAX_OWNER_ID_LENGTH ||
    // A lone surrogate is encoded as U+FFFD by database drivers: two such ids would be one
    // owner in the store.
    !ownerId.isWellFormed()
  ) {
    throw new TypeError(
      `keyward: ownerId must be a non-empty string of well-formed Unicode, at most ${MAX_OWNER_ID_LENGTH} characters.`,
    );
  }
}
