/**
 * Clock readings shared by everything that happens within one millisecond. The guard's
 * cache hit needs the time twice (the entry's expiry and the key's lastUsedAt), and in a
 * busy server each read of a clock costs about as much as the rest of the hit
 * (bench/README.md). A reading is kept until a timer drops it, `resolutionMs` later or
 * when the event loop next runs timers, whichever comes last; an idle process sets no
 * timer at all. The same idea as lru-cache's `ttlResolution`.
 */
export class CoarseClock {
  #fresh = false;
  #monotonic = 0;
  #wall = 0;
  readonly #expire = () => {
    this.#fresh = false;
  };

  constructor(
    /** The wall clock, in epoch ms. */
    private readonly wallNow: () => number = Date.now,
    private readonly resolutionMs = 1,
  ) {}

  /** `performance.now()`, at most `resolutionMs` (and one turn of the event loop) old. */
  monotonic(): number {
    if (!this.#fresh) this.#read();
    return this.#monotonic;
  }

  /** The wall clock (epoch ms), read at the same moment as `monotonic()`. */
  wall(): number {
    if (!this.#fresh) this.#read();
    return this.#wall;
  }

  #read(): void {
    this.#monotonic = performance.now();
    this.#wall = this.wallNow();
    this.#fresh = true;
    setTimeout(this.#expire, this.resolutionMs).unref();
  }
}
