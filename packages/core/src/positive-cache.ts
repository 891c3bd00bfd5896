import { LRUCache } from 'lru-cache';

interface Entry<R> {
  readonly digest: string;
  readonly result: R;
  /** When it stops counting, in `performance.now()` ms. */
  readonly expiresAt: number;
  /** Wall-clock ms from which the key itself is refused (its `expiresAt`); Infinity if
   * never. */
  readonly validUntil: number;
  /** Wall-clock ms of the last use passed on to `onUse`, and of the last move up the
   * LRU order. */
  usedAt: number;
  touchedAt: number;
}

/** How often a key in constant use moves up the LRU order. */
const RECENCY_REFRESH_MS = 1000;

/**
 * The positive cache (docs/design.md, "Verification: the guard's path"): the SHA-256 digest of a raw key →
 * its verified result, bounded, with a TTL, and droppable by key id (revoke, rename, bus).
 *
 * lru-cache decides what is in it: the bound and which entry goes first. The hit path reads
 * a plain Map of the same entries instead: in a busy server an lru-cache `get()` costs
 * about as much as the SHA-256 in front of it, and so does each clock read (measured with
 * `pnpm bench:guard-cost`). So a hit reads one Map and the caller's one clock reading;
 * the LRU hears of a key's use once a second, and expiry is a timer's job: entries come
 * due in the order they were added (one TTL for all), so one timer, armed for the oldest,
 * drops each as it comes due, never later than the event loop's next turn of timers.
 */
export class PositiveCache<
  R extends { readonly key: { readonly id: string; readonly ownerId: string } },
> {
  readonly #lru: LRUCache<string, Entry<R>>;
  readonly #hot = new Map<string, Entry<R>>();
  readonly #digestById = new Map<string, string>();
  /** Every entry added, oldest first, from `#head` on; dropped ones wait for their turn. */
  #due: Entry<R>[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly options: {
      max: number;
      ttlMs: number;
      /** Called on a hit, at most once per key and millisecond (lastUsedAt). */
      onUse: (id: string, at: number) => void;
      /** Called with the digest of an entry found past its key's expiry (then dropped). */
      onExpired?: (digest: string) => void;
    },
  ) {
    this.#lru = new LRUCache<string, Entry<R>>({
      max: options.max,
      dispose: (entry, digest) => {
        if (this.#hot.get(digest) === entry) this.#hot.delete(digest);
        const { id } = entry.result.key;
        if (this.#digestById.get(id) === digest) this.#digestById.delete(id);
      },
    });
  }

  /** The result cached under `digest`, or `undefined`. `now`: the wall clock, epoch ms. */
  get(digest: string, now: number): R | undefined {
    const entry = this.#hot.get(digest);
    if (entry === undefined) return undefined;
    if (now >= entry.validUntil) {
      // Checked on each hit rather than timed per key: one comparison, no timer.
      this.#lru.delete(digest);
      this.options.onExpired?.(digest);
      return undefined;
    }
    if (now !== entry.usedAt) {
      // First hit of this millisecond. Once a second, the key moves up the LRU order (a
      // wall clock that stepped back counts as a second gone by).
      if (now - entry.touchedAt >= RECENCY_REFRESH_MS || now < entry.touchedAt) {
        entry.touchedAt = now;
        this.#lru.get(digest);
      }
      entry.usedAt = now;
      this.options.onUse(entry.result.key.id, now);
    }
    return entry.result;
  }

  /** Caches `result` under `digest` for the TTL, and never at or past `validUntil` (the
   * key's own expiry, wall-clock ms). */
  set(digest: string, result: R, now: number, validUntil = Number.POSITIVE_INFINITY): void {
    // A verification that finishes after close() caches nothing: no timer would expire it.
    if (this.#closed) return;
    const entry: Entry<R> = {
      digest,
      result,
      expiresAt: performance.now() + this.options.ttlMs,
      validUntil,
      usedAt: 0,
      touchedAt: now,
    };
    this.#lru.set(digest, entry);
    this.#hot.set(digest, entry);
    this.#digestById.set(result.key.id, digest);
    this.#due.push(entry);
    this.#compact();
    this.#armTimer();
  }

  /** Drops the key with this id, if cached (and, with `ownerId`, only if it is that
   * owner's). */
  deleteKey(id: string, ownerId?: string): void {
    const digest = this.#digestById.get(id);
    if (digest === undefined) return;
    if (ownerId !== undefined && this.#hot.get(digest)?.result.key.ownerId !== ownerId) return;
    this.#lru.delete(digest);
  }

  get size(): number {
    return this.#lru.size;
  }

  /** Entries waiting in the expiry queue, dropped ones included (for tests). */
  get queued(): number {
    return this.#due.length - this.#head;
  }

  /** Empties the cache, which stays in use (the bus was away: any entry may be stale). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lru.clear();
    this.#due = [];
    this.#head = 0;
  }

  /** Empties the cache and stops the expiry timer. With no timer, nothing would expire: a
   * closed service's guard verifies every key afresh (and fails closed once its store is
   * gone) instead of accepting cached ones for ever. */
  close(): void {
    this.#closed = true;
    this.clear();
  }

  /** Keeps the queue near the cache's own size: its spent front goes once it is most of the
   * array, and entries already dropped (evicted, revoked) go once they outnumber the live
   * ones, so churn under a long TTL cannot pile them up. Both keep the order. */
  #compact(): void {
    if (this.#head === this.#due.length) {
      this.#due = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#due.length) {
      this.#due = this.#due.slice(this.#head);
      this.#head = 0;
    }
    if (this.#due.length - this.#head > 2 * this.#lru.size + 1024) {
      this.#due = this.#due.slice(this.#head).filter((e) => this.#hot.get(e.digest) === e);
      this.#head = 0;
    }
  }

  #armTimer(): void {
    const next = this.#due[this.#head];
    if (this.#timer !== undefined || next === undefined) return;
    // setTimeout takes at most 2^31 - 1 ms (24.8 days); a longer TTL waits in steps.
    const delay = Math.min(next.expiresAt - performance.now(), 2 ** 31 - 1);
    this.#timer = setTimeout(() => this.#expire(), delay);
    // Never keeps the host's process alive on its own.
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (let next = this.#due[this.#head]; next && next.expiresAt <= now; ) {
      if (this.#hot.get(next.digest) === next) this.#lru.delete(next.digest);
      next = this.#due[++this.#head];
    }
    this.#compact();
    this.#armTimer();
  }
}
