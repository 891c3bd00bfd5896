/**
 * Tells every instance of a host app that a key changed, so each drops it from its caches
 * at once instead of waiting for the positive cache's TTL. Optional: without a bus, the
 * TTL is the bound. @keyward/redis ships one over pub/sub, @keyward/kysely one over
 * Postgres LISTEN/NOTIFY.
 */
export interface InvalidationBus {
  /** Sends the event to every subscribed instance, this one included. */
  publish(event: InvalidationEvent): Promise<void>;
  /**
   * Starts delivering events to `listener`; resolves once the subscription is live, and
   * rejects if it cannot be made. The returned function ends it. A bus whose connection
   * drops keeps the subscription: it listens again on its own, with backoff, and then
   * calls `options.onResync`, since events published meanwhile never reached it.
   */
  subscribe(
    listener: (event: InvalidationEvent) => void,
    options?: SubscribeOptions,
  ): Promise<() => Promise<void>>;
}

export interface SubscribeOptions {
  /**
   * Called each time the subscription is live again after a gap (a dropped connection) in
   * which events may have been lost: the subscriber must treat every key as possibly
   * revoked, e.g. empty its caches. A bus that cannot lose events never calls it.
   */
  onResync?: () => void;
}

/** How long a bus waits before its `attempt`-th retry (0 first) at listening again:
 * exponential from 100 ms, capped at 30 s, with jitter on the upper half so instances
 * cut off together do not all come back in the same millisecond. */
export function busRetryDelay(attempt: number): number {
  const ceiling = Math.min(100 * 2 ** Math.min(attempt, 20), 30_000);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

const invalidationTypes = ['revoked', 'renamed', 'updated', 'rolled'] as const;
export type InvalidationType = (typeof invalidationTypes)[number];

export interface InvalidationEvent {
  /** What happened to the key: revoked; renamed (v1 instances send this for any update);
   * updated (name, metadata or expiry); rolled (its expiry brought forward by a roll). */
  type: InvalidationType;
  /** Public id of the key. Never the raw key or its lookup part. */
  keyId: string;
  /** The key's owner, when known. A receiver then drops the key only where it is cached
   * as that owner's: an event sent on a failed revocation (which could not check who owns
   * the id) cannot evict another account's key. */
  ownerId?: string;
}

/** The wire form of an event: only its own fields, whatever else the caller's object
 * holds. */
export function serializeInvalidationEvent(event: InvalidationEvent): string {
  const { type, keyId, ownerId } = event;
  return JSON.stringify(ownerId === undefined ? { type, keyId } : { type, keyId, ownerId });
}

/** Parses an event received from the wire; anything malformed is `null`. */
export function parseInvalidationEvent(payload: string): InvalidationEvent | null {
  try {
    const value: unknown = JSON.parse(payload);
    if (typeof value !== 'object' || value === null) return null;
    const { type, keyId, ownerId } = value as Record<string, unknown>;
    if (typeof keyId !== 'string' || !invalidationTypes.includes(type as InvalidationType)) {
      return null;
    }
    if (ownerId !== undefined && typeof ownerId !== 'string') return null;
    const event: InvalidationEvent = { type: type as InvalidationType, keyId };
    if (ownerId !== undefined) event.ownerId = ownerId;
    return event;
  } catch {
    return null;
  }
}

/** Hands a payload received on `channel` to each listener, as every bus does: a malformed
 * payload goes to `onError` instead, and so does what a listener throws, so one failing
 * listener keeps the event from no other. Each listener gets its own copy. */
export function deliverInvalidationEvent(
  payload: string,
  listeners: Iterable<(event: InvalidationEvent) => void>,
  onError: (error: unknown) => void,
  channel: string,
): void {
  const event = parseInvalidationEvent(payload);
  if (!event) {
    onError(new Error(`keyward: ignored a malformed event on channel "${channel}".`));
    return;
  }
  for (const listener of [...listeners]) {
    try {
      listener({ ...event });
    } catch (error) {
      onError(error);
    }
  }
}

/** A bus inside one process: for tests, and for several services sharing a store in one
 * process. */
export function memoryBus(): InvalidationBus {
  const listeners = new Set<(event: InvalidationEvent) => void>();
  return {
    async publish(event) {
      for (const listener of listeners) listener({ ...event });
    },
    async subscribe(listener) {
      listeners.add(listener);
      return async () => {
        listeners.delete(listener);
      };
    },
  };
}
