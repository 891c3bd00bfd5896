import {
  compareNewestFirst,
  type InsertResult,
  KeyCollisionError,
  type KeyStore,
  type LastUsedUpdate,
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

  const copy = (key: StoredKey): StoredKey => ({
    ...key,
    createdAt: new Date(key.createdAt),
    lastUsedAt: key.lastUsedAt && new Date(key.lastUsedAt),
  });
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
      const ids = idsByOwner.get(key.ownerId) ?? new Set<string>();
      if (ids.size >= maxKeysPerOwner) return { ok: false, reason: 'limit_reached' };
      ids.add(key.id);
      idsByOwner.set(key.ownerId, ids);
      byId.set(key.id, copy(key));
      idByLookup.set(key.lookup, key.id);
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

    async rename(ownerId, id, name) {
      const key = owned(ownerId, id);
      if (!key) return null;
      key.name = name;
      return copy(key);
    },

    async delete(ownerId, id) {
      const key = owned(ownerId, id);
      if (!key) return false;
      byId.delete(id);
      idByLookup.delete(key.lookup);
      const ids = idsByOwner.get(ownerId);
      ids?.delete(id);
      if (ids?.size === 0) idsByOwner.delete(ownerId);
      return true;
    },

    async recordLastUsed(updates: readonly LastUsedUpdate[]) {
      for (const { id, lastUsedAt } of updates) {
        const key = byId.get(id);
        if (key && (key.lastUsedAt === null || key.lastUsedAt < lastUsedAt)) {
          key.lastUsedAt = new Date(lastUsedAt);
        }
      }
    },

    /** Nothing to reach and nothing to set up: always ready. */
    async check() {},
  } satisfies MemoryStore;
}
