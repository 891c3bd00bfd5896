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
  /** From this instant on the key is refused; `null`: it never expires. */
  expiresAt: Date | null;
  /** What the key may do; `['*']` is everything. Fixed at creation. */
  scopes: string[];
  /** The host's own JSON object, returned with the key. */
  metadata: KeyMetadata;
  /** Id of the key that created this one over HTTP; `null` when made by the host's code.
   * Always a key of the same owner. */
  createdBy: string | null;
  /** When a leak of this key was first confirmed and it was quarantined; `null` otherwise.
   * A marked key holds no management scope (docs/design.md, "Leak response"). */
  leakedAt: Date | null;
  /** Where that leak was reported from (`github`, `report`, or the host's own label). */
  leakSource: string | null;
}

/** A JSON object, as `JSON.parse` returns one. */
export type KeyMetadata = { [field: string]: unknown };

/** What `update` may change. Absent fields stay as they are. */
export interface KeyChanges {
  name?: string;
  /** Replaces the metadata whole. */
  metadata?: KeyMetadata;
  /** The store keeps the earlier of this and the key's current expiry: `update` never
   * extends a key's life, even when two updates race. */
  expiresAt?: Date;
  /** Marks the key leaked. The store keeps the first mark: on a key already marked, both
   * fields stay as they are, so a repeated alert changes nothing. */
  leak?: { at: Date; source: string };
}

export type RollResult =
  | { ok: true; previous: StoredKey }
  | { ok: false; reason: 'not_found' | 'limit_reached' };

export interface LastUsedUpdate {
  id: string;
  lastUsedAt: Date;
}

export type InsertResult = { ok: true } | { ok: false; reason: 'limit_reached' };

/**
 * The storage contract (docs/design.md, "Store contract"). A missing row is `null` or `false`;
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
  /** Applies `changes` and returns the updated key, or `null` when the owner has no key
   * with that id. */
  update(ownerId: string, id: string, changes: KeyChanges): Promise<StoredKey | null>;
  /** Deletes permanently; `false` when the owner has no key with that id. */
  delete(ownerId: string, id: string): Promise<boolean>;
  /**
   * Deletes the key and, transitively, every key it created (`createdBy`), in one atomic
   * step: either all go or none. Returns the deleted ids, the named key first; empty when
   * the owner has no key with that id.
   */
  deleteTree(ownerId: string, id: string): Promise<string[]>;
  /**
   * Replaces a key without downtime, atomically: inserts `next` and sets the old key's
   * expiry to the earlier of its own and `previousExpiresAt`, or does neither. Refuses with
   * `not_found` when the owner has no such key or it has expired by `now`, and with
   * `limit_reached` when the owner already holds `maxKeysPerOwner` keys. A duplicate id or
   * lookup part of `next` throws `KeyCollisionError` and changes nothing.
   */
  roll(
    ownerId: string,
    id: string,
    next: StoredKey,
    options: { previousExpiresAt: Date; now: Date; maxKeysPerOwner: number },
  ): Promise<RollResult>;
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

/** The earlier of two expiries, where `null` means never. */
export function earlierExpiry(a: Date | null, b: Date | null): Date | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.getTime() <= b.getTime() ? a : b;
}

/** Newest first: createdAt descending, then id descending. Shared by the stores that sort
 * in process. */
export function compareNewestFirst(a: StoredKey, b: StoredKey): number {
  const byTime = b.createdAt.getTime() - a.createdAt.getTime();
  if (byTime !== 0) return byTime;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}
