/**
 * Which keys were invalidated (revoked, renamed, bus event) while verifications were in
 * flight, so a verification that read a record before its key changed neither caches that
 * result nor hands it to a request that arrived after the change, and a change to one key
 * never holds back the caching of any other.
 *
 * A sequence number counts invalidations; a verification notes the number when it starts,
 * and asks at the end whether its key was invalidated since. The map of last invalidations
 * is bounded: an entry pushed out raises a floor, and a verification that started below the
 * floor counts as invalidated (conservative: it is merely not cached). The service clears
 * the map whenever no verification is in flight, since nobody can ask about the past then.
 */
export class InvalidationLog {
  #seq = 0;
  #floor = 0;
  /** keyId → sequence number of its last invalidation, oldest first. */
  readonly #last = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** The number a verification starting now notes. */
  get seq(): number {
    return this.#seq;
  }

  record(keyId: string): void {
    this.#seq++;
    // Re-inserted, so the map stays in sequence order and the oldest goes first.
    this.#last.delete(keyId);
    this.#last.set(keyId, this.#seq);
    if (this.#last.size > this.max) {
      const [oldestId, oldestSeq] = this.#last.entries().next().value as [string, number];
      this.#last.delete(oldestId);
      this.#floor = oldestSeq;
    }
  }

  /** Every key at once (the bus was away, events may have been lost): each verification
   * in flight counts as invalidated. */
  recordAll(): void {
    this.#seq++;
    this.#floor = this.#seq;
    this.#last.clear();
  }

  /** Whether `keyId` may have been invalidated after a verification started at `seq`. */
  since(keyId: string, seq: number): boolean {
    return seq < this.#floor || (this.#last.get(keyId) ?? 0) > seq;
  }

  /** Forgets every entry; only when no verification that could ask is in flight. */
  clear(): void {
    this.#last.clear();
  }

  get size(): number {
    return this.#last.size;
  }
}
