import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { InvalidationEvent } from './bus.js';
import { KeywardError } from './errors.js';
import { hashKey, verifyKeyHash } from './hashing.js';
import { generateKey, generateKeyId, parseKey } from './key-format.js';
import { LastUsedWriter, latest } from './last-used.js';
import { normalizeKeyName } from './names.js';
import {
  type InvalidKeyReason,
  type KeyServiceOptions,
  type ResolvedOptions,
  resolveOptions,
} from './options.js';
import { Semaphore } from './semaphore.js';
import { KeyCollisionError, type StoredKey } from './store.js';

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

export type VerifyResult =
  | { ok: true; key: AuthenticatedKey }
  | { ok: false; reason: InvalidKeyReason };

const keyIdPattern = /^key_[0-9A-Za-z]{1,64}$/;
const MAX_OWNER_ID_LENGTH = 255;
/** How many fresh ids and lookup parts to try when a store reports a collision. */
const INSERT_ATTEMPTS = 3;

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
 * Verification (DESIGN.md): offline format and checksum check, then the positive cache,
 * the negative cache, the per-lookup failure budget, one indexed store read, and argon2id
 * under a process-wide bound. Store failures surface as `service_unavailable`: an unverified
 * key is never accepted.
 */
export function createKeyService(options: KeyServiceOptions) {
  const o = resolveOptions(options);
  const { store } = o;
  const argon2Slots = new Semaphore(o.maxConcurrent, o.maxQueue);
  const lastUsed = new LastUsedWriter(store, o.lastUsedFlushIntervalMs, o.onError);

  // Key: SHA-256 of the raw key, so the cache holds no usable secret.
  const digestById = new Map<string, string>();
  const verified = new LRUCache<string, AuthenticatedKey>({
    max: o.cacheMax,
    ttl: o.cacheTtlMs,
    dispose: (key, digest) => {
      if (digestById.get(key.id) === digest) digestById.delete(key.id);
    },
  });
  const refused = new LRUCache<string, InvalidKeyReason>({
    max: o.negativeCacheMax,
    ttl: o.negativeCacheTtlMs,
  });
  const failures = new LRUCache<string, { count: number }>({
    max: o.negativeCacheMax,
    ttl: o.cooldownMs,
  });
  const inFlight = new Map<string, Promise<VerifyResult>>();
  // Bumped by every invalidation: a verification that started before one may have read
  // a record that no longer holds, so its result is not cached.
  let epoch = 0;

  function invalidateLocally(keyId: string): void {
    epoch++;
    inFlight.clear();
    const digest = digestById.get(keyId);
    if (digest !== undefined) verified.delete(digest);
  }

  const subscription = o.bus
    ?.subscribe((event: InvalidationEvent) => {
      invalidateLocally(event.keyId);
      if (event.type === 'revoked') lastUsed.forget(event.keyId);
    })
    .catch((error: unknown) => {
      o.onError(error);
      return undefined;
    });

  async function publish(event: InvalidationEvent): Promise<void> {
    if (!o.bus) return;
    // The change is durable in the store already; a bus failure only means other
    // instances hold the key until their cache TTL. Reported, not thrown.
    await o.bus.publish(event).catch(o.onError);
  }

  async function verify(rawKey: string): Promise<VerifyResult> {
    const parsed = typeof rawKey === 'string' ? parseKey(rawKey, o.prefix) : null;
    if (!parsed) return refuse('malformed');
    const digest = createHash('sha256').update(rawKey).digest('base64');
    const hit = verified.get(digest);
    if (hit) {
      lastUsed.record(hit.id, o.now());
      return { ok: true, key: hit };
    }
    const knownBad = refused.get(digest);
    if (knownBad) return refuse(knownBad, rawKey);
    let pending = inFlight.get(digest);
    if (!pending) {
      pending = verifyCold(rawKey, parsed.lookup, digest).finally(() => {
        if (inFlight.get(digest) === pending) inFlight.delete(digest);
      });
      inFlight.set(digest, pending);
    }
    const result = await pending;
    if (result.ok) lastUsed.record(result.key.id, o.now());
    else o.onInvalidKey({ reason: result.reason, keyPrefix: maskedPrefix(rawKey) });
    return result;
  }

  async function verifyCold(rawKey: string, lookup: string, digest: string): Promise<VerifyResult> {
    const startEpoch = epoch;
    if ((failures.get(lookup)?.count ?? 0) >= o.maxFailures) {
      return { ok: false, reason: 'too_many_failures' };
    }
    const record = await callStore(() => store.findByLookup(lookup));
    if (!record) {
      refused.set(digest, 'unknown_key');
      return { ok: false, reason: 'unknown_key' };
    }
    const matches = await argon2Slots.run(() => verifyKeyHash(record.hash, rawKey));
    if (!matches) {
      refused.set(digest, 'wrong_secret');
      const entry = failures.get(lookup);
      if (entry) entry.count++;
      else failures.set(lookup, { count: 1 });
      return { ok: false, reason: 'wrong_secret' };
    }
    const key = toAuthenticatedKey(record);
    if (epoch === startEpoch) {
      verified.set(digest, key);
      digestById.set(key.id, digest);
    }
    return { ok: true, key };
  }

  function refuse(reason: InvalidKeyReason, rawKey?: string): VerifyResult {
    o.onInvalidKey(rawKey ? { reason, keyPrefix: maskedPrefix(rawKey) } : { reason });
    return { ok: false, reason };
  }

  /** Runs a store call with a deadline; any failure becomes `service_unavailable`, with
   * the store's own error kept as `cause` for `onError` and out of every response. */
  function callStore<T>(call: () => Promise<T>, onLateResult?: (value: T) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(unavailable(new Error(`store call timed out after ${o.storeTimeoutMs} ms`)));
      }, o.storeTimeoutMs);
      call().then(
        (value) => {
          clearTimeout(timer);
          if (settled) onLateResult?.(value);
          else resolve(value);
          settled = true;
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          reject(error instanceof KeyCollisionError ? error : unavailable(error));
        },
      );
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

    /** Resolves once the invalidation bus (if any) is listening. */
    async ready(): Promise<void> {
      await subscription;
    },

    /**
     * Creates a key for `ownerId`. The raw key is in the result and nowhere else: it is
     * returned only after the store confirmed the write. Throws `invalid_request` for a bad
     * name, `key_limit_reached` at the cap, `service_unavailable` if the store fails.
     */
    async create(ownerId: string, name: unknown): Promise<CreatedApiKey> {
      assertOwnerId(ownerId);
      const cleanName = normalizeKeyName(name);
      for (let attempt = 1; ; attempt++) {
        const generated = generateKey(o.prefix);
        const record: StoredKey = {
          id: generateKeyId(),
          ownerId,
          name: cleanName,
          lookup: generated.lookup,
          hash: await argon2Slots.run(() => hashKey(generated.rawKey, o.argon2)),
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
              if (late.ok) store.delete(ownerId, record.id).catch(o.onError);
            },
          );
          if (!result.ok) throw new KeywardError('key_limit_reached');
          return { ...toApiKey(record), rawKey: generated.rawKey };
        } catch (error) {
          if (!(error instanceof KeyCollisionError)) throw error;
          if (attempt >= INSERT_ATTEMPTS) throw unavailable(error);
        }
      }
    },

    /** An account's keys, newest first, with lastUsedAt as this instance knows it. */
    async list(ownerId: string): Promise<ApiKey[]> {
      assertOwnerId(ownerId);
      const records = await callStore(() => store.listByOwner(ownerId));
      return records.map(toApiKey);
    },

    /** The renamed key, or `null` if the account has no key with that id. */
    async rename(ownerId: string, id: string, name: unknown): Promise<ApiKey | null> {
      assertOwnerId(ownerId);
      const cleanName = normalizeKeyName(name);
      if (!isKeyId(id)) return null;
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
      const deleted = await callStore(() => store.delete(ownerId, id));
      if (!deleted) return false;
      invalidateLocally(id);
      lastUsed.forget(id);
      await publish({ type: 'revoked', keyId: id });
      return true;
    },

    /**
     * Checks a presented key. `{ ok: false, reason }` for every kind of bad key (the
     * reason is for logs, not for the client); throws `service_unavailable` when the
     * store cannot answer or too many verifications are queued.
     */
    verify,

    /** Drops a key from this instance's caches, as a bus event would. */
    invalidate(keyId: string): void {
      invalidateLocally(keyId);
    },

    /** Writes pending lastUsedAt values now. */
    flushLastUsed(): Promise<void> {
      return lastUsed.flush();
    },

    /** Stops the flush timer and the bus subscription and writes what is pending.
     * Rejects if that last write fails, so the host knows it was not saved. */
    async close(): Promise<void> {
      const unsubscribe = await subscription;
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

function toAuthenticatedKey(record: StoredKey): AuthenticatedKey {
  return {
    id: record.id,
    ownerId: record.ownerId,
    name: record.name,
    keyPrefix: record.keyPrefix,
    keySuffix: record.keySuffix,
    createdAt: record.createdAt,
  };
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
