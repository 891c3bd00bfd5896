/**
 * Tells every instance of a host app that a key changed, so each drops it from its caches
 * at once instead of waiting for the positive cache's TTL. Optional: without a bus, the
 * TTL is the bound. @keyward/redis ships one over pub/sub, @keyward/kysely one over
 * Postgres LISTEN/NOTIFY.
 */
export interface InvalidationBus {
  /** Sends the event to every subscribed instance, this one included. */
  publish(event: InvalidationEvent): Promise<void>;
  /** Starts delivering events to `listener`; resolves once the subscription is live.
   * The returned function ends it. */
  subscribe(listener: (event: InvalidationEvent) => void): Promise<() => Promise<void>>;
}

const invalidationTypes = ['revoked', 'renamed', 'updated', 'rolled'] as const;
export type InvalidationType = (typeof invalidationTypes)[number];

export interface InvalidationEvent {
  /** What happened to the key: revoked; renamed (v1 instances send this for any update);
   * updated (name, metadata or expiry); rolled (its expiry brought forward by a roll). */
  type: InvalidationType;
  /** Public id of the key. Never the raw key or its lookup part. */
  keyId: string;
}

/** Parses an event received from the wire; anything malformed is `null`. */
export function parseInvalidationEvent(payload: string): InvalidationEvent | null {
  try {
    const value: unknown = JSON.parse(payload);
    if (typeof value !== 'object' || value === null) return null;
    const { type, keyId } = value as Record<string, unknown>;
    if (typeof keyId !== 'string' || !invalidationTypes.includes(type as InvalidationType)) {
      return null;
    }
    return { type: type as InvalidationType, keyId };
  } catch {
    return null;
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
