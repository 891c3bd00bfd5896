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
  /** At most `limit` requests per epoch-aligned window; `null`: no limit. */
  rateLimit: RateLimit | null;
  /** A balance spent by requests; `null`: none. `remaining` here is the store's balance,
   * leases held by instances already taken out. */
  credits: StoredCredits | null;
  /** When a leak of this key was first confirmed and it was quarantined; `null` otherwise.
   * A marked key holds no management scope (docs/design.md, "Leak response"). */
  leakedAt: Date | null;
  /** Where that leak was reported from (`github`, `report`, or the host's own label). */
  leakSource: string | null;
}

/** At most `limit` requests in each window of `windowSec` seconds, aligned to the epoch. */
export interface RateLimit {
  limit: number;
  windowSec: number;
}

/** Sets the balance to `amount` at 00:00 UTC of each day or of the first of each month. */
export interface CreditRefill {
  amount: number;
  every: 'day' | 'month';
}

/** A key's credits as its owner sees them. */
export interface Credits {
  remaining: number;
  refill: CreditRefill | null;
  /** One atomic store call per request instead of leases: the balance is exact. */
  strict: boolean;
}

/** Credits as a store keeps them: with the instant (epoch ms) the balance was last set
 * (create, update, roll or refill). A refill is due when it is older than the current
 * period's start; a returned lease names it, and one from an older balance is ignored. */
export interface StoredCredits extends Credits {
  resetAt: number;
}

/** What a lease claim gave: `granted` units (0 when fewer than `atLeast` were left), and
 * what the store has left after it. */
export interface WindowGrant {
  granted: number;
  remaining: number;
}

export interface CreditGrant {
  granted: number;
  remaining: number;
  /** The balance's `resetAt`, which a return of this lease must name. */
  resetAt: number;
}

/** A claim of part of the current window's allowance (docs/design.md, "Leases"). */
export interface WindowClaim {
  /** Start of the current window, epoch ms. */
  windowStart: number;
  limit: number;
  /** Units wanted; the store may grant fewer (see `leaseGrant`). */
  want: number;
  /** Fewer than this left: grant nothing. */
  atLeast: number;
}

export interface CreditClaim {
  want: number;
  atLeast: number;
  /** Start of the current refill period, epoch ms, when the key has a refill: a balance
   * set before it is refilled first. */
  periodStart: number | null;
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
  /** Replaces the limit; `null` removes it. */
  rateLimit?: RateLimit | null;
  /** Replaces the credits, balance and all; `null` removes them. */
  credits?: StoredCredits | null;
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
   * expiry to the earlier of its own and `previousExpiresAt`, or does neither. When the old
   * key has credits, `next` takes its balance and `resetAt` as the store holds them, and
   * the old key keeps a balance of 0 with no refill and `resetAt = now`; `next` also takes
   * the old key's count for the current window. Refuses with
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
   * Hands out part of the key's allowance for the window starting at `windowStart`, in one
   * atomic step: a count older than that window starts again from 0, one newer grants
   * nothing, and the units handed out in a window never exceed `limit`. The grant follows
   * `leaseGrant`. An unknown id, or another owner's, grants nothing. Scoped to the owner
   * like every write, so a store can keep the count beside the record (one Redis slot).
   */
  claimWindow(ownerId: string, id: string, claim: WindowClaim): Promise<WindowGrant>;
  /** Gives back `amount` unspent units of the window starting at `windowStart`; nothing
   * when the store counts another window or the key is gone. */
  returnWindow(ownerId: string, id: string, windowStart: number, amount: number): Promise<void>;
  /**
   * Takes part of the key's credit balance, atomically, refilling it first when
   * `periodStart` is after its `resetAt`. The grant follows `leaseGrant`; the balance never
   * goes below 0. `null` when the key is gone or has no credits.
   */
  claimCredits(ownerId: string, id: string, claim: CreditClaim): Promise<CreditGrant | null>;
  /** Gives back `amount` unspent credits, only if the balance is still the one they came
   * from (`resetAt` unchanged); otherwise, or for a key that is gone, nothing. */
  returnCredits(ownerId: string, id: string, amount: number, resetAt: number): Promise<void>;
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

/**
 * How many units a lease claim grants from `left` (docs/design.md, "Leases"): nothing when
 * fewer than `atLeast` are left, else up to `want`, at most a quarter of what is left
 * (rounded up) so leases shrink as the allowance runs low, and always at least `atLeast`.
 * Every store computes this same formula inside its atomic step.
 */
export function leaseGrant(left: number, want: number, atLeast: number): number {
  if (left < atLeast || left <= 0) return 0;
  return Math.min(left, Math.max(atLeast, Math.min(want, Math.ceil(left / 4))));
}
