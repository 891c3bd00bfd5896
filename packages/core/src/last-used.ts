import { withDeadline } from './deadline.js';
import type { KeyStore, LastUsedUpdate } from './store.js';

/**
 * Write-behind for lastUsedAt. A request only notes the time in memory; a timer writes the
 * latest time of each used key in one batch per interval, so store writes grow with active
 * keys, never with requests. A failed batch is merged back and retried on the next tick.
 *
 * Times are kept as epoch milliseconds: `record` runs on every guarded request, and a
 * number costs no allocation there. They become Dates only when written or read.
 */
export class LastUsedWriter {
  #pending = new Map<string, number>();
  /** The batch being written right now: still "pending" for readers until it lands. */
  #inFlight = new Map<string, number>();
  #flushing: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly store: KeyStore,
    flushIntervalMs: number,
    onError: (error: unknown) => void,
    /** A write slower than this counts as failed: its batch goes back to pending, so a
     * stalled store connection cannot hold every later batch (and `close()`) hostage. A
     * late success is harmless, since lastUsedAt only moves forward. */
    private readonly writeTimeoutMs: number = 5000,
  ) {
    this.#timer = setInterval(() => {
      this.flush().catch(onError);
    }, flushIntervalMs);
    // A pending write must never keep the host's process alive on its own.
    this.#timer.unref();
  }

  /** Notes a use of key `id` at `at` (epoch ms, or a Date). Only ever moves forward. */
  record(id: string, at: number | Date): void {
    const ms = typeof at === 'number' ? at : at.getTime();
    const known = this.#pending.get(id);
    // Most calls repeat the time already noted (same key, same millisecond): skip the set.
    if (known === undefined || known < ms) this.#pending.set(id, ms);
  }

  /** The newest time known for a key that the store may not have yet. */
  pendingFor(id: string): Date | undefined {
    const pending = this.#pending.get(id);
    const inFlight = this.#inFlight.get(id);
    if (pending === undefined && inFlight === undefined) return undefined;
    return new Date(Math.max(pending ?? 0, inFlight ?? 0));
  }

  /** Forget a revoked key's pending time: there is no row left to write it to. */
  forget(id: string): void {
    this.#pending.delete(id);
    this.#inFlight.delete(id);
  }

  get size(): number {
    return this.#pending.size + this.#inFlight.size;
  }

  /** Writes everything noted before the call: waits for a write already under way (which
   * may predate some of it), then writes the rest. One batch at a time. Rejects if the
   * store fails, after putting the batch back for the next attempt. */
  async flush(): Promise<void> {
    if (this.#flushing) await this.#flushing.catch(() => {});
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
    const batch: LastUsedUpdate[] = [];
    for (const [id, ms] of this.#inFlight) batch.push({ id, lastUsedAt: new Date(ms) });
    try {
      await withDeadline(this.store.recordLastUsed(batch), this.writeTimeoutMs, 'lastUsedAt write');
    } catch (error) {
      for (const [id, ms] of this.#inFlight) this.record(id, ms);
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
