/**
 * What a store keeps for one API key. Never the raw key or its secret: only the argon2id
 * hash of the whole key, the lookup part and the two masked ends.
 */
export interface StoredKey {
  /** Public id, `key_…`. */
  id: string;
  /** The account the key belongs to. */
  ownerId: string;
  name: string;
  /** Random part of the key body used to find this record; unique. */
  lookup: string;
  /** argon2id PHC string of the raw key. */
  hash: string;
  keyPrefix: string;
  keySuffix: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export interface LastUsedUpdate {
  id: string;
  lastUsedAt: Date;
}

export type InsertResult = { ok: true } | { ok: false; reason: 'limit_reached' };

/**
 * The storage contract (DESIGN.md, "Store contract"). A missing row is `null` or `false`;
 * only infrastructure failures throw, and a store never swallows them.
 */
export interface KeyStore {
  /**
   * Adds a key unless its owner already holds `maxKeysPerOwner` keys, atomically: concurrent
   * inserts never exceed the cap. A duplicate id or lookup throws `KeyCollisionError`.
   */
  insert(key: StoredKey, options: { maxKeysPerOwner: number }): Promise<InsertResult>;
  /** The only operation not scoped to an owner: the verification path. */
  findByLookup(lookup: string): Promise<StoredKey | null>;
  /** An owner's keys, newest first (createdAt desc, then id desc). */
  listByOwner(ownerId: string): Promise<StoredKey[]>;
  /** The renamed key, or `null` when the owner has no key with that id. */
  rename(ownerId: string, id: string, name: string): Promise<StoredKey | null>;
  /** Deletes permanently; `false` when the owner has no key with that id. */
  delete(ownerId: string, id: string): Promise<boolean>;
  /** Moves lastUsedAt forward only: an older time never overwrites a newer one. Ids that no
   * longer exist are ignored. */
  recordLastUsed(updates: readonly LastUsedUpdate[]): Promise<void>;
  /**
   * Optional readiness check, run by `service.ready()`: one cheap round trip that resolves
   * when the store can serve. It rejects with a `StoreMisconfiguredError` when the store is
   * reachable but set up wrong (a missing table or column, a client of the wrong kind),
   * which no retry fixes; any other rejection is an outage.
   */
  check?(): Promise<void>;
}

/**
 * A store reachable but set up wrong, say a table that `migrate` never created. Its message
 * names the fix. A startup error, for logs: it has no HTTP status, and a request that meets
 * it still answers 503, with this error passed to `onError`.
 */
export class StoreMisconfiguredError extends Error {
  override readonly name = 'StoreMisconfiguredError';
  readonly code = 'store_misconfigured';
}

/** Thrown by `insert` when the id or the lookup part already exists. */
export class KeyCollisionError extends Error {
  override readonly name = 'KeyCollisionError';
  constructor(readonly field: 'id' | 'lookup') {
    super(`An API key with the same ${field} already exists.`);
  }
}

/** Newest first: createdAt descending, then id descending. Shared by the stores that sort
 * in process. */
export function compareNewestFirst(a: StoredKey, b: StoredKey): number {
  const byTime = b.createdAt.getTime() - a.createdAt.getTime();
  if (byTime !== 0) return byTime;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}
