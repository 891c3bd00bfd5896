/**
 * Tells every instance of a host app that a key changed, so each drops it from its caches
 * at once instead of waiting for the positive cache's TTL. Optional: without a bus, the
 * TTL is the bound. @keyward/redis ships one over pub/sub, @keyward/kysely one over
 * Postgres LISTEN/NOTIFY.
 */
import { positiveInt } from './options.js';

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
  /**
   * Set by a bus that reads a replayable log (docs/design.md, "Invalidation log"): it calls
   * `onCaughtUp` as it catches up, and the key service then holds its cache to
   * `maxStalenessMs`. A bus without it (pub/sub) cannot say how fresh its view is, and the
   * cache TTL stays the bound.
   */
  readonly vouchesForView?: boolean;
  /** With `vouchesForView`: the longest the bus goes without reading its log while the log
   * is quiet. The key service refuses a `maxStalenessMs` under twice this. */
  readonly heartbeatMs?: number;
}

export interface SubscribeOptions {
  /**
   * Called each time the subscription is live again after a gap (a dropped connection) in
   * which events may have been lost: the subscriber must treat every key as possibly
   * revoked, e.g. empty its caches. A bus that cannot lose events never calls it.
   */
  onResync?: () => void;
  /**
   * Called by a log bus each time it has delivered every event published before `asOf`, a
   * `performance.now()` reading of this process taken before the read that caught up was
   * sent. An instance's view is as old as the last `asOf`.
   */
  onCaughtUp?: (asOf: number) => void;
}

/** How long a bus waits before its `attempt`-th retry (0 first) at listening again:
 * exponential from 100 ms, capped at 30 s, with jitter on the upper half so instances
 * cut off together do not all come back in the same millisecond. */
export function busRetryDelay(attempt: number): number {
  const ceiling = Math.min(100 * 2 ** Math.min(attempt, 20), 30_000);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

const invalidationTypes = ['revoked', 'renamed', 'updated', 'rolled', 'expired-early'] as const;
/** The types keyward itself sends. */
export type KnownInvalidationType = (typeof invalidationTypes)[number];
/**
 * What happened to a key. Open: a receiver drops the key from its caches whatever the type,
 * so a type added later (limits changed, quarantined…) reaches older instances as an
 * invalidation rather than as a malformed event. A type is 1 to 32 of `[a-z-]`.
 */
export type InvalidationType = KnownInvalidationType | (string & {});
const typePattern = /^[a-z][a-z-]{0,31}$/;

export interface InvalidationEvent {
  /** What happened to the key: revoked; renamed (v1 instances send this for any update);
   * updated (name, metadata or expiry); rolled (its expiry brought forward by a roll);
   * expired-early (its expiry brought forward by an update); or a type of another part
   * of keyward (see `InvalidationType`). */
  type: InvalidationType;
  /** Public id of the key. Never the raw key or its lookup part. */
  keyId: string;
  /** The key's owner, when known. A receiver then drops the key only where it is cached
   * as that owner's: an event sent on a failed revocation (which could not check who owns
   * the id) cannot evict another account's key. */
  ownerId?: string;
  /** When it was published, epoch ms of the publisher's clock: for the revocation lag
   * metric only, never for a decision. Set by `serializeInvalidationEvent`. */
  publishedAt?: number;
}

/** The wire form of an event: only its own fields, whatever else the caller's object
 * holds, and `publishedAt` (now, unless set). */
export function serializeInvalidationEvent(event: InvalidationEvent): string {
  const { type, keyId, ownerId } = event;
  const at = event.publishedAt ?? Date.now();
  return JSON.stringify(ownerId === undefined ? { type, keyId, at } : { type, keyId, ownerId, at });
}

/** Parses an event received from the wire; anything malformed is `null`. */
export function parseInvalidationEvent(payload: string): InvalidationEvent | null {
  try {
    const value: unknown = JSON.parse(payload);
    if (typeof value !== 'object' || value === null) return null;
    const { type, keyId, ownerId, at } = value as Record<string, unknown>;
    if (typeof keyId !== 'string' || typeof type !== 'string' || !typePattern.test(type)) {
      return null;
    }
    if (ownerId !== undefined && typeof ownerId !== 'string') return null;
    const event: InvalidationEvent = { type, keyId };
    if (ownerId !== undefined) event.ownerId = ownerId;
    if (typeof at === 'number' && Number.isFinite(at)) event.publishedAt = at;
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

/**
 * What every bus keeps of its subscriptions (docs/design.md, "Invalidation"): each
 * `subscribe` call is one (the same function subscribed twice is two), its options, and a
 * queue that runs the steps bringing the connection to what the subscriptions need one at
 * a time, so a subscribe racing the last unsubscribe cannot end with subscriptions and no
 * connection.
 */
export function busSubscriptions(onError: (error: unknown) => void) {
  const subscriptions = new Map<(event: InvalidationEvent) => void, SubscribeOptions>();
  let queue: Promise<unknown> = Promise.resolve();
  /** Runs `step` once every step queued before it is over; the caller gets its failure. */
  const serially = <T>(step: () => Promise<T>): Promise<T> => {
    const run = queue.then(step);
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    serially,
    get size(): number {
      return subscriptions.size;
    },
    /** The listeners, for `deliverInvalidationEvent`. */
    listeners: () => subscriptions.keys(),
    /** Calls `call` with each subscription's options; what it throws goes to `onError`. */
    each(call: (options: SubscribeOptions) => void): void {
      for (const options of [...subscriptions.values()]) {
        try {
          call(options);
        } catch (error) {
          onError(error);
        }
      }
    },
    /**
     * Adds a subscription and runs `connect` in the queue; if that fails, the subscription
     * is taken out again and the failure thrown. The answer takes it out (once) and runs
     * `disconnect` in the queue.
     */
    async add(
      listener: (event: InvalidationEvent) => void,
      options: SubscribeOptions | undefined,
      connect: () => Promise<void>,
      disconnect: () => Promise<void>,
    ): Promise<() => Promise<void>> {
      const subscription = (event: InvalidationEvent) => listener(event);
      subscriptions.set(subscription, options ?? {});
      try {
        await serially(connect);
      } catch (error) {
        subscriptions.delete(subscription);
        throw error;
      }
      return async () => {
        if (subscriptions.delete(subscription)) await serially(disconnect);
      };
    },
  };
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

/** The `node:diagnostics_channel` on which the key service reports what its bus does, as
 * {@link InvalidationDiagnostic} messages. Nothing is built while nobody listens. */
export const INVALIDATION_CHANNEL = 'keyward:invalidation';

export type InvalidationDiagnostic =
  | {
      /** An event from the bus was applied to this instance's caches. */
      readonly kind: 'applied';
      readonly type: InvalidationType;
      readonly keyId: string;
      /** From its publication (the publisher's clock) to now (this one's), in ms; `null`
       * when the event carries no publication time. */
      readonly lagMs: number | null;
    }
  | {
      /** Events may have been lost (the log was trimmed past this instance's position, or
       * a pub/sub bus reconnected): the positive cache was emptied. */
      readonly kind: 'resync';
    };

/** One entry of an invalidation log. */
export interface LogEntry {
  /** Where it sits in the log, in the store's own notation. */
  readonly position: string;
  /** A serialized `InvalidationEvent`. */
  readonly payload: string;
}

/** Entries that directly follow a position, and the position after them. */
export interface LogDelivery {
  readonly entries: readonly LogEntry[];
  readonly position: string;
}

/** What a read of the log returned. */
export interface LogRead {
  /** Entries after the position asked for, oldest first. */
  readonly entries: readonly LogEntry[];
  /** Where the next read starts: the last entry's position, or where the log now ends. */
  readonly position: string;
  /** The log no longer holds everything that followed the position asked for (trimmed past
   * it, or emptied and started again): events may have been lost. */
  readonly lost: boolean;
  /** More entries follow this batch: read again before saying the view is current. */
  readonly more: boolean;
}

/**
 * A store's invalidation log, as `logBus` drives it. `read` must be atomic: its entries
 * and its `lost` answer describe one state of the log, and that state is no older than
 * the moment `read` was called.
 */
export interface LogBusSource {
  /** Appends one entry; resolves once it is durable and readable by every instance. */
  append(payload: string): Promise<void>;
  /** The position a new subscription starts from: the log's newest entry, now. */
  head(): Promise<string>;
  read(position: string): Promise<LogRead>;
  /**
   * Resolves when an entry after `position` may have arrived, or after about `waitMs`. It
   * may hand over entries it already has (a notification's, a blocking read's), but only
   * ones that follow `position` with nothing missing between: they are applied at once,
   * and a read follows anyway, which decides about anything else.
   */
  wait(position: string, waitMs: number): Promise<LogDelivery | undefined>;
  /** Called when the first subscription starts and after the last one ends (a LISTEN
   * connection, say). `early` applies a payload at once, ahead of its place in the log: for
   * a wake-up that carries the event before the entry is readable (only an optimisation:
   * the log entry still comes through `read` or `wait`, and is not applied twice). */
  start?(early: (payload: string) => void): Promise<void>;
  stop?(): Promise<void>;
}

/** What both log buses (`postgresLogBus`, `redisStreamBus`) take beside where the log lives. */
export interface LogBusSettings {
  /** Longest time between two reads of the log while it is quiet (the heartbeat): keep it
   * well under the key service's `maxStalenessMs`. @default 1000 */
  heartbeatMs?: number;
  /** A read of the log slower than this counts as failed. @default 2000 */
  timeoutMs?: number;
  /** Entries kept: each append trims the log to this many (on Redis about this many: it
   * trims whole stream nodes). @default 10000 */
  maxEntries?: number;
  /** Entries older than this are trimmed by the next append (the newest stays).
   * @default 86400000 (a day) */
  maxAgeMs?: number;
  /** Receives the errors the bus cannot throw (see `logBus`). Required. */
  onError: (error: unknown) => void;
}

/** A log bus's retention, defaults filled in; a value that is not a positive integer is a
 * TypeError naming it. */
export function logRetention(settings: Pick<LogBusSettings, 'maxEntries' | 'maxAgeMs'>): {
  maxEntries: number;
  maxAgeMs: number;
} {
  return {
    maxEntries: positiveInt('maxEntries', settings.maxEntries, 10_000),
    maxAgeMs: positiveInt('maxAgeMs', settings.maxAgeMs, 86_400_000),
  };
}

export interface LogBusOptions {
  /** Longest wait between two reads of the log while it is quiet: each completed read is
   * a heartbeat, so this bounds the view's age in normal operation. @default 1000 */
  heartbeatMs?: number;
  /** A read or wait that has not answered after this (plus the wait itself) counts as
   * failed. @default 2000 */
  timeoutMs?: number;
  /** Names the log in errors. */
  name: string;
  /** Receives what the bus cannot throw to a caller: the first failed read of a run of
   * failures, a trimmed log, malformed entries, listeners' exceptions. */
  onError: (error: unknown) => void;
}

/**
 * An invalidation bus over a replayable log (docs/design.md, "Invalidation log"): one
 * reader per bus, however many subscriptions, which keeps its position in the log, reads
 * what follows it (after a lost connection too, so nothing published meanwhile is missed),
 * and tells each subscription through `onCaughtUp` how current it is. A log trimmed past
 * the position calls `onResync` and `onError`.
 */
export function logBus(source: LogBusSource, options: LogBusOptions): InvalidationBus {
  const heartbeatMs = positiveInt('heartbeatMs', options.heartbeatMs, 1000);
  const timeoutMs = positiveInt('timeoutMs', options.timeoutMs, 2000);
  const { onError, name } = options;
  const subscriptions = busSubscriptions(onError);
  // Bumped each time the reader stops, so a reader from before stops too.
  let generation = 0;
  let reading = false;

  // Payloads delivered lately: a source may hand an event over twice (an early wake-up,
  // then its log entry), and it is applied once. Bounded, oldest out first.
  const delivered = new Set<string>();
  const deliver = (entries: readonly LogEntry[]) => {
    for (const { payload } of entries) {
      if (delivered.has(payload)) continue;
      delivered.add(payload);
      if (delivered.size > RECENT_PAYLOADS) {
        delivered.delete(delivered.values().next().value as string);
      }
      deliverInvalidationEvent(payload, subscriptions.listeners(), onError, name);
    }
  };

  async function run(position: string, mine: number): Promise<void> {
    let failures = 0;
    const live = () => generation === mine;
    while (live()) {
      // Taken before the read is sent: everything appended before now is in its answer.
      const asOf = performance.now();
      let read: LogRead;
      try {
        read = await bounded(source.read(position), timeoutMs, `reading ${name}`);
      } catch (error) {
        if (!live()) return;
        if (failures++ === 0) {
          onError(
            new Error(`keyward: could not read the invalidation log ${name}.`, { cause: error }),
          );
        }
        await pause(Math.min(busRetryDelay(failures - 1), heartbeatMs));
        continue;
      }
      if (!live()) return;
      failures = 0;
      if (read.lost) {
        onError(
          new Error(
            `keyward: the invalidation log ${name} no longer holds every event after this instance's position; its cache was emptied.`,
          ),
        );
        subscriptions.each((subscription) => subscription.onResync?.());
      }
      deliver(read.entries);
      position = read.position;
      if (read.more) continue;
      subscriptions.each((subscription) => subscription.onCaughtUp?.(asOf));
      try {
        const woke = await bounded(
          source.wait(position, heartbeatMs),
          heartbeatMs + timeoutMs,
          `waiting on ${name}`,
        );
        // Entries that follow the position, handed over by the wake-up: applied now, and
        // the read that follows confirms there is nothing else.
        if (woke !== undefined && live()) {
          deliver(woke.entries);
          position = woke.position;
        }
      } catch {
        // The next read says whether the log is reachable; until the wake-up works again,
        // the heartbeat is a poll.
        if (live()) await pause(heartbeatMs);
      }
    }
  }

  // Applied as it arrives, not on the reader's next turn: a wake-up's event reaches the
  // caches as fast as a plain pub/sub message would (bench/revocation-lag.ts).
  const early = (payload: string) => {
    if (reading) deliver([{ position: '', payload }]);
  };

  const start = async () => {
    if (reading || subscriptions.size === 0) return;
    await source.start?.(early);
    let position: string;
    try {
      position = await bounded(source.head(), timeoutMs, `reading ${name}`);
    } catch (error) {
      await source.stop?.().catch(() => undefined);
      throw error;
    }
    reading = true;
    void run(position, generation);
  };

  const stopIfUnused = async () => {
    if (!reading || subscriptions.size > 0) return;
    reading = false;
    generation++;
    await source.stop?.();
  };

  return {
    vouchesForView: true,
    heartbeatMs,
    publish: (event) => source.append(serializeInvalidationEvent(event)),
    subscribe: (listener, subscribeOptions) =>
      subscriptions.add(listener, subscribeOptions, start, stopIfUnused),
  };
}

/** Payloads a log bus remembers having delivered. */
const RECENT_PAYLOADS = 2048;

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** `work`, or a rejection once `ms` have passed; a late failure is dropped. */
function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
