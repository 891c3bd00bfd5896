import type { KeyStore, LastUsedUpdate } from './store.js';

/**
 * Write-behind for lastUsedAt. A request only notes the time in memory; a timer writes the
 * latest time of each used key in one batch per interval, so store writes grow with active
 * keys, never with requests. A failed batch is merged back and retried on the next tick.
 */
export class LastUsedWriter {
  #pending = new Map<string, Date>();
  /** The batch being written right now: still "pending" for readers until it lands. */
  #inFlight = new Map<string, Date>();
  #flushing: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly store: KeyStore,
    flushIntervalMs: number,
    onError: (error: unknown) => void,
  ) {
    this.#timer = setInterval(() => {
      this.flush().catch(onError);
    }, flushIntervalMs);
    // A pending write must never keep the host's process alive on its own.
    this.#timer.unref();
  }

  record(id: string, at: Date): void {
    const known = this.#pending.get(id);
    if (!known || known < at) this.#pending.set(id, at);
  }

  /** The newest time known for a key that the store may not have yet. */
  pendingFor(id: string): Date | undefined {
    return latest(this.#pending.get(id), this.#inFlight.get(id));
  }

  /** Forget a revoked key's pending time: there is no row left to write it to. */
  forget(id: string): void {
    this.#pending.delete(id);
    this.#inFlight.delete(id);
  }

  get size(): number {
    return this.#pending.size + this.#inFlight.size;
  }

  /** Writes what is pending now; one batch at a time. Rejects if the store fails, after
   * putting the batch back for the next attempt. */
  flush(): Promise<void> {
    this.#flushing ??= this.#write().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#flushing?.catch(() => {});
    await this.flush();
  }

  async #write(): Promise<void> {
    if (this.#pending.size === 0) return;
    this.#inFlight = this.#pending;
    this.#pending = new Map();
    const batch: LastUsedUpdate[] = [...this.#inFlight].map(([id, lastUsedAt]) => ({
      id,
      lastUsedAt,
    }));
    try {
      await this.store.recordLastUsed(batch);
    } catch (error) {
      for (const { id, lastUsedAt } of batch) {
        if (this.#inFlight.has(id)) this.record(id, lastUsedAt);
      }
      throw error;
    } finally {
      this.#inFlight = new Map();
    }
  }
}

/** The later of two optional times. */
export function latest(a: Date | undefined, b: Date | undefined): Date | undefined {
  if (!a || !b) return a ?? b;
  return a.getTime() >= b.getTime() ? a : b;
}
