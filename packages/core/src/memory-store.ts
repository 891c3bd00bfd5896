import {
  compareNewestFirst,
  earlierExpiry,
  type InsertResult,
  KeyCollisionError,
  type KeyStore,
  type LastUsedUpdate,
  leaseGrant,
  type StoredKey,
} from './store.js';

/**
 * The in-memory store: the executable definition of the store contract, and the store for
 * tests and single-process demos. Every method completes in one synchronous step, so the
 * per-owner cap is atomic without locks. Records are copied in and out: callers can never
 * mutate what the store holds.
 */
export interface MemoryStore extends KeyStore {
  /** Copies of every record held, for tests and debugging. */
  snapshot(): StoredKey[];
}

export function memoryStore(): MemoryStore {
  const byId = new Map<string, StoredKey>();
  const idByLookup = new Map<string, string>();
  const idsByOwner = new Map<string, Set<string>>();
  // Per key: the window counted and the units of it handed out in leases.
  const windows = new Map<string, { start: number; used: number }>();

  const copy = (key: StoredKey): StoredKey => ({
    ...key,
    createdAt: new Date(key.createdAt),
    lastUsedAt: key.lastUsedAt && new Date(key.lastUsedAt),
    expiresAt: key.expiresAt && new Date(key.expiresAt),
    leakedAt: key.leakedAt && new Date(key.leakedAt),
    scopes: [...key.scopes],
    metadata: structuredClone(key.metadata),
    rateLimit: key.rateLimit && { ...key.rateLimit },
    credits: key.credits && {
      ...key.credits,
      refill: key.credits.refill && { ...key.credits.refill },
    },
  });
  const remove = (key: StoredKey): void => {
    byId.delete(key.id);
    windows.delete(key.id);
    idByLookup.delete(key.lookup);
    const ids = idsByOwner.get(key.ownerId);
    ids?.delete(key.id);
    if (ids?.size === 0) idsByOwner.delete(key.ownerId);
  };
  const add = (key: StoredKey): void => {
    const ids = idsByOwner.get(key.ownerId) ?? new Set<string>();
    ids.add(key.id);
    idsByOwner.set(key.ownerId, ids);
    byId.set(key.id, copy(key));
    idByLookup.set(key.lookup, key.id);
  };
  const countOf = (ownerId: string): number => idsByOwner.get(ownerId)?.size ?? 0;
  const owned = (ownerId: string, id: string): StoredKey | undefined => {
    const key = byId.get(id);
    return key?.ownerId === ownerId ? key : undefined;
  };

  return {
    snapshot() {
      return [...byId.values()].map(copy);
    },

    async insert(key, { maxKeysPerOwner }): Promise<InsertResult> {
      if (byId.has(key.id)) throw new KeyCollisionError('id');
      if (idByLookup.has(key.lookup)) throw new KeyCollisionError('lookup');
      if (countOf(key.ownerId) >= maxKeysPerOwner) return { ok: false, reason: 'limit_reached' };
      add(key);
      return { ok: true };
    },

    async findByLookup(lookup) {
      const id = idByLookup.get(lookup);
      const key = id === undefined ? undefined : byId.get(id);
      return key ? copy(key) : null;
    },

    async listByOwner(ownerId) {
      const ids = idsByOwner.get(ownerId) ?? [];
      return [...ids]
        .map((id) => byId.get(id))
        .filter((key): key is StoredKey => key !== undefined)
        .sort(compareNewestFirst)
        .map(copy);
    },

    async update(ownerId, id, changes) {
      const key = owned(ownerId, id);
      if (!key) return null;
      if (changes.name !== undefined) key.name = changes.name;
      if (changes.metadata !== undefined) key.metadata = structuredClone(changes.metadata);
      if (changes.expiresAt !== undefined) {
        key.expiresAt = earlierExpiry(key.expiresAt, new Date(changes.expiresAt));
      }
      if (changes.rateLimit !== undefined) key.rateLimit = changes.rateLimit;
      if (changes.credits !== undefined) key.credits = changes.credits;
      if (changes.leak !== undefined && key.leakedAt === null) {
        key.leakedAt = new Date(changes.leak.at);
        key.leakSource = changes.leak.source;
      }
      return copy(key);
    },

    async delete(ownerId, id) {
      const key = owned(ownerId, id);
      if (!key) return false;
      remove(key);
      return true;
    },

    async deleteTree(ownerId, id) {
      const root = owned(ownerId, id);
      if (!root) return [];
      const owners = [...(idsByOwner.get(ownerId) ?? [])]
        .map((keyId) => byId.get(keyId))
        .filter((key): key is StoredKey => key !== undefined);
      const doomed = [root];
      for (let i = 0; i < doomed.length; i++) {
        const parent = doomed[i] as StoredKey;
        for (const child of owners) {
          if (child.createdBy === parent.id && !doomed.includes(child)) doomed.push(child);
        }
      }
      for (const key of doomed) remove(key);
      return doomed.map((key) => key.id);
    },

    async roll(ownerId, id, next, { previousExpiresAt, now, maxKeysPerOwner }) {
      const previous = owned(ownerId, id);
      if (!previous || (previous.expiresAt !== null && previous.expiresAt <= now)) {
        return { ok: false, reason: 'not_found' };
      }
      if (byId.has(next.id)) throw new KeyCollisionError('id');
      if (idByLookup.has(next.lookup)) throw new KeyCollisionError('lookup');
      if (countOf(ownerId) >= maxKeysPerOwner) return { ok: false, reason: 'limit_reached' };
      add(next);
      const added = byId.get(next.id) as StoredKey;
      if (previous.credits) {
        added.credits = { ...previous.credits };
        previous.credits = {
          ...previous.credits,
          remaining: 0,
          refill: null,
          resetAt: now.getTime(),
        };
      }
      const counted = windows.get(previous.id);
      if (counted) windows.set(next.id, { ...counted });
      previous.expiresAt = earlierExpiry(previous.expiresAt, new Date(previousExpiresAt));
      return { ok: true, previous: copy(previous) };
    },

    async recordLastUsed(updates: readonly LastUsedUpdate[]) {
      for (const { id, lastUsedAt } of updates) {
        const key = byId.get(id);
        if (key && (key.lastUsedAt === null || key.lastUsedAt < lastUsedAt)) {
          key.lastUsedAt = new Date(lastUsedAt);
        }
      }
    },

    async claimWindow(ownerId, id, { windowStart, limit, want, atLeast }) {
      if (!owned(ownerId, id)) return { granted: 0, remaining: 0 };
      let counted = windows.get(id);
      if (!counted || counted.start < windowStart) {
        counted = { start: windowStart, used: 0 };
        windows.set(id, counted);
      }
      if (counted.start > windowStart) return { granted: 0, remaining: 0 };
      const left = Math.max(0, limit - counted.used);
      const granted = leaseGrant(left, want, atLeast);
      counted.used += granted;
      return { granted, remaining: left - granted };
    },

    async returnWindow(ownerId, id, windowStart, amount) {
      if (!owned(ownerId, id)) return;
      const counted = windows.get(id);
      if (counted?.start === windowStart) counted.used = Math.max(0, counted.used - amount);
    },

    async claimCredits(ownerId, id, { want, atLeast, periodStart }) {
      const credits = owned(ownerId, id)?.credits;
      if (!credits) return null;
      if (credits.refill && periodStart !== null && credits.resetAt < periodStart) {
        credits.remaining = credits.refill.amount;
        credits.resetAt = periodStart;
      }
      const granted = leaseGrant(credits.remaining, want, atLeast);
      credits.remaining -= granted;
      return { granted, remaining: credits.remaining, resetAt: credits.resetAt };
    },

    async returnCredits(ownerId, id, amount, resetAt) {
      const credits = owned(ownerId, id)?.credits;
      if (credits?.resetAt === resetAt) credits.remaining += amount;
    },

    /** Nothing to reach and nothing to set up: always ready. */
    async check() {},
  } satisfies MemoryStore;
}
