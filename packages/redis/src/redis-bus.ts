import {
  type InvalidationBus,
  type InvalidationEvent,
  parseInvalidationEvent,
} from '@keyward/core';
import type { Cluster, Redis } from 'ioredis';

export interface RedisBusOptions {
  /** Sends events with PUBLISH. Any client will do, the store's included; on a Cluster
   * the message reaches subscribers on every node. */
  publisher: Redis | Cluster;
  /**
   * A connection of its own (e.g. `client.duplicate()`), which the bus puts in subscriber
   * mode: such a connection can run no other command. The host opens and closes it.
   */
  subscriber: Redis | Cluster;
  /**
   * Pub/sub channel. Instances that should see each other's revocations must use the same
   * one, and apps sharing a Redis a different one each.
   * @default 'keyward:invalidation'
   */
  channel?: string;
  /**
   * Receives what a listener throws, so one failing listener neither stops delivery to
   * the others nor disturbs the connection's reply parsing.
   * @default rethrows it on the next tick, as an uncaught exception: never lost silently
   */
  onListenerError?: (error: unknown) => void;
}

/**
 * The invalidation bus over Redis pub/sub. Messages are JSON `{type, keyId}`; anything
 * else arriving on the channel is ignored. Pub/sub is fire-and-forget: an instance that is
 * disconnected when an event is published misses it, and its cache TTL remains the bound.
 */
export function redisBus(options: RedisBusOptions): InvalidationBus {
  const { publisher, subscriber } = options;
  const channel = options.channel ?? 'keyward:invalidation';
  const onListenerError =
    options.onListenerError ??
    ((error: unknown) =>
      setImmediate(() => {
        throw error;
      }));
  const listeners = new Set<(event: InvalidationEvent) => void>();

  const onMessage = (from: string, payload: string) => {
    if (from !== channel) return;
    const event = parseInvalidationEvent(payload);
    if (!event) return;
    for (const listener of [...listeners]) {
      try {
        listener({ ...event });
      } catch (error) {
        onListenerError(error);
      }
    }
  };

  // SUBSCRIBE and UNSUBSCRIBE run one at a time, each bringing the connection to what
  // the listener set needs at that moment, so interleaved subscribe/unsubscribe calls
  // cannot leave the channel unsubscribed while a listener waits for events.
  let subscribed = false;
  let queue: Promise<void> = Promise.resolve();
  const sync = (): Promise<void> => {
    const step = queue.then(async () => {
      if (listeners.size > 0 && !subscribed) {
        subscriber.on('message', onMessage);
        try {
          await subscriber.subscribe(channel);
        } catch (error) {
          subscriber.off('message', onMessage);
          throw error;
        }
        subscribed = true;
      } else if (listeners.size === 0 && subscribed) {
        await subscriber.unsubscribe(channel);
        subscriber.off('message', onMessage);
        subscribed = false;
      }
    });
    // The caller gets the failure; the queue only needs to know the step is over.
    queue = step.catch(() => undefined);
    return step;
  };

  return {
    async publish(event) {
      await publisher.publish(channel, JSON.stringify({ type: event.type, keyId: event.keyId }));
    },

    async subscribe(listener) {
      // A wrapper per call, so the same function subscribed twice is two subscriptions.
      const entry = (event: InvalidationEvent) => listener(event);
      listeners.add(entry);
      try {
        await sync();
      } catch (error) {
        listeners.delete(entry);
        throw error;
      }
      return async () => {
        if (listeners.delete(entry)) await sync();
      };
    },
  };
}
