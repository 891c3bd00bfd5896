import {
  busRetryDelay,
  busSubscriptions,
  deliverInvalidationEvent,
  type InvalidationBus,
  serializeInvalidationEvent,
} from '@keyward/core';
import type { Cluster, Redis } from 'ioredis';

export interface RedisBusOptions {
  /** Sends events with PUBLISH. Any client will do, the store's included; on a Cluster
   * the message reaches subscribers on every node. */
  publisher: Redis | Cluster;
  /**
   * A connection of its own (e.g. `client.duplicate()`), which the bus puts in subscriber
   * mode: such a connection can run no other command. The host opens and closes it. When
   * it drops, ioredis reconnects it (keep a `retryStrategy` that never gives up: once it
   * does, the connection ends and so does delivery); the bus
   * then subscribes again and tells its subscribers events may have been missed. For
   * `subscribe()` to fail fast when Redis is down, give it `enableOfflineQueue: false` or
   * a small `maxRetriesPerRequest`.
   */
  subscriber: Redis | Cluster;
  /**
   * Pub/sub channel. Instances that should see each other's revocations must use the same
   * one, and apps sharing a Redis a different one each.
   * @default 'keyward:invalidation'
   */
  channel?: string;
  /**
   * Receives what the bus cannot throw to a caller: a SUBSCRIBE that fails again after a
   * reconnect (retried with backoff), malformed payloads on the channel, and exceptions
   * thrown by listeners (so one failing listener neither stops delivery to the others nor
   * disturbs the connection's reply parsing). Required, as for `postgresBus`, so such
   * failures are never silent.
   */
  onError: (error: unknown) => void;
}

/**
 * The invalidation bus over Redis pub/sub. Messages are JSON `{type, keyId}`; anything
 * else arriving on the channel is ignored and reported to `onError`. Pub/sub is fire-and-forget: an instance that is
 * disconnected when an event is published misses it, so once its subscriber connection is
 * back and subscribed again, the bus calls each subscription's `onResync` (the key service
 * empties its cache).
 */
export function redisBus(options: RedisBusOptions): InvalidationBus {
  const { publisher, subscriber } = options;
  const channel = options.channel ?? 'keyward:invalidation';
  const { onError } = options;
  // SUBSCRIBE and UNSUBSCRIBE run one at a time (subscriptions.serially), each bringing the
  // connection to what the subscriptions need at that moment, so interleaved subscribe and
  // unsubscribe calls cannot leave the channel unsubscribed while a listener waits.
  const subscriptions = busSubscriptions(onError);
  const serially = subscriptions.serially;

  const onMessage = (from: string, payload: string) => {
    if (from !== channel) return;
    deliverInvalidationEvent(payload, subscriptions.listeners(), onError, channel);
  };

  // A dropped connection opens a gap: events published until the channel is subscribed
  // again are lost. ioredis reconnects by itself (and, by default, resubscribes); once it
  // has, the bus sends its own SUBSCRIBE, which is harmless if ioredis already did and
  // tells when the channel is live again, and only then reports the gap as closed.
  let drops = 0;
  let gap = false;
  let retries = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  const onClose = () => {
    drops++;
    gap = true;
  };
  const onBack = () => {
    if (gap) void resubscribe();
  };
  // The connection that carries the subscription: the client itself, whose 'ready' says
  // it is back; on a Cluster, the node connection ioredis picked, which it replaces by
  // another once it has ended.
  const backEvent = subscriber.isCluster ? 'end' : 'ready';
  let watched: Redis | undefined;
  const watch = () => {
    const connection = subscriptionConnection(subscriber);
    if (connection === watched) return;
    unwatch();
    watched = connection;
    watched?.on('close', onClose);
    watched?.on(backEvent, onBack);
  };
  const unwatch = () => {
    watched?.off('close', onClose);
    watched?.off(backEvent, onBack);
    watched = undefined;
  };

  const resubscribe = (): Promise<void> =>
    serially(async () => {
      clearTimeout(retryTimer);
      retryTimer = undefined;
      if (!gap || !subscribed || subscriber.status !== 'ready') return;
      const seen = drops;
      try {
        await subscriber.subscribe(channel);
      } catch (error) {
        // A single server whose connection dropped again comes back here on its next
        // 'ready'; otherwise (SUBSCRIBE refused, a Cluster node that failed) retry.
        if (subscriber.status === 'ready') {
          onError(
            new Error(`keyward: the bus could not listen again on channel "${channel}".`, {
              cause: error,
            }),
          );
          retryTimer = setTimeout(() => void resubscribe(), busRetryDelay(retries++));
          retryTimer.unref();
        }
        return;
      }
      watch();
      if (drops !== seen) return;
      gap = false;
      retries = 0;
      subscriptions.each((subscription) => subscription.onResync?.());
    });

  let subscribed = false;
  /** Subscribes or unsubscribes, as the subscriptions need now. Runs inside `serially`. */
  const sync = async (): Promise<void> => {
    if (subscriptions.size > 0 && !subscribed) {
      subscriber.on('message', onMessage);
      try {
        await subscriber.subscribe(channel);
      } catch (error) {
        subscriber.off('message', onMessage);
        throw error;
      }
      subscribed = true;
      gap = false;
      watch();
    } else if (subscriptions.size === 0 && subscribed) {
      await subscriber.unsubscribe(channel);
      unwatch();
      subscriber.off('message', onMessage);
      subscribed = false;
      clearTimeout(retryTimer);
      retryTimer = undefined;
    }
  };

  return {
    async publish(event) {
      await publisher.publish(channel, serializeInvalidationEvent(event));
    },

    subscribe: (listener, subscribeOptions) =>
      subscriptions.add(listener, subscribeOptions, sync, sync),
  };
}

/** The connection a subscriber's SUBSCRIBE went to: a Cluster keeps it out of its public
 * API (ioredis 6), so without it a Cluster's gaps go unnoticed, as before. */
function subscriptionConnection(subscriber: Redis | Cluster): Redis | undefined {
  if (!subscriber.isCluster) return subscriber as Redis;
  const internal = subscriber as unknown as { subscriber?: { getInstance?(): Redis | null } };
  return internal.subscriber?.getInstance?.() ?? undefined;
}
