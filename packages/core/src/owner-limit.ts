import { LRUCache } from 'lru-cache';

/**
 * At most `limit` actions per owner in a fixed window of `windowMs`, in this process. Owners
 * are tracked in a bounded LRU: one pushed out by `maxOwners` busier ones starts a fresh
 * window, which only matters when that many owners act within one window.
 */
export class OwnerLimit {
  readonly #windows: LRUCache<string, { count: number }>;

  constructor(
    private readonly limit: number,
    windowMs: number,
    maxOwners: number,
  ) {
    this.#windows = new LRUCache({ max: maxOwners, ttl: windowMs });
  }

  /** Counts one action; `undefined` if allowed, else the seconds until the window ends. */
  take(ownerId: string): number | undefined {
    let window = this.#windows.get(ownerId);
    if (!window) {
      window = { count: 0 };
      this.#windows.set(ownerId, window);
    }
    if (window.count >= this.limit) {
      return Math.max(1, Math.ceil(this.#windows.getRemainingTTL(ownerId) / 1000));
    }
    window.count++;
    return undefined;
  }
}
