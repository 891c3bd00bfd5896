import {
  type InvalidationBus,
  type InvalidationEvent,
  parseInvalidationEvent,
} from '@keyward/core';
import { sql } from 'kysely';
import type { AnyKysely } from './table.js';

/** A notification as pg's `Client` emits it. */
export interface PgNotification {
  channel: string;
  payload?: string | undefined;
}

/**
 * The part of pg's `Client` the bus uses to listen. It must be a dedicated connection that
 * stays open: not one borrowed from a pool, whose next borrower would inherit the LISTEN.
 */
export interface PgListenConnection {
  query(text: string): Promise<unknown>;
  on(event: 'notification', listener: (message: PgNotification) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'notification', listener: (message: PgNotification) => void): unknown;
}

/** The part of PGlite the bus uses to listen: PGlite has one session, with its own API. */
export interface PgliteListenConnection {
  listen(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>>;
}

export interface PostgresBusOptions {
  /** Publishes the events (`pg_notify`); any Kysely on the database, e.g. the store's. */
  db: AnyKysely;
  /**
   * Where this instance listens: a pg `Client` opened for the bus alone, or the PGlite
   * instance. The bus adds an 'error' listener to a pg client when it is created, for good.
   * If the connection drops, its error goes to `onError` and no further event arrives on it:
   * reconnecting is the host's part (open a new client, build a new bus, subscribe again,
   * and clear the key caches, since events may have been missed meanwhile).
   */
  connection: PgListenConnection | PgliteListenConnection;
  /**
   * The NOTIFY channel; every instance sharing a store must use the same one.
   * A lower-case identifier of at most 63 characters.
   * @default 'keyward_invalidation'
   */
  channel?: string;
  /**
   * Receives what the bus cannot throw to a caller: errors of the listen connection (a
   * dropped connection ends delivery), malformed payloads on the channel, and exceptions
   * thrown by listeners. Required, so such failures are never silent.
   */
  onError: (error: unknown) => void;
}

export const DEFAULT_CHANNEL = 'keyward_invalidation';

/**
 * An invalidation bus over Postgres LISTEN/NOTIFY, on a server or on PGlite. One LISTEN per
 * bus, however many subscribers: the first subscription starts it, the last one ends it.
 */
export function postgresBus(options: PostgresBusOptions): InvalidationBus {
  const channel = options.channel ?? DEFAULT_CHANNEL;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) {
    // Lower-case only: PGlite sends the name unquoted, which Postgres would fold to lower case.
    throw new TypeError(
      `keyward: channel must be a lower-case identifier of at most 63 characters, got ${JSON.stringify(channel)}.`,
    );
  }
  const { onError } = options;
  const executor = options.db.withoutPlugins();
  const connection = listenSource(options.connection, onError);
  const listeners = new Set<(event: InvalidationEvent) => void>();
  let stopListening: (() => Promise<void>) | null = null;
  // LISTEN and UNLISTEN run one at a time, so a subscribe racing the last unsubscribe
  // cannot end up with listeners and no LISTEN.
  let transitions: Promise<unknown> = Promise.resolve();
  const serially = <T>(step: () => Promise<T>): Promise<T> => {
    const run = transitions.then(step);
    transitions = run.catch(() => undefined);
    return run;
  };

  const deliver = (payload: string) => {
    const event = parseInvalidationEvent(payload);
    if (!event) {
      onError(new Error(`keyward: ignored a malformed notification on channel "${channel}".`));
      return;
    }
    for (const listener of [...listeners]) {
      try {
        listener({ ...event });
      } catch (error) {
        onError(error);
      }
    }
  };

  return {
    async publish(event) {
      // Only the two fields go on the wire, whatever else the caller's object holds.
      const payload = JSON.stringify({ type: event.type, keyId: event.keyId });
      await sql`select pg_notify(${channel}, ${payload})`.execute(executor);
    },

    async subscribe(listener) {
      // A wrapper per subscription, so one function subscribed twice is two subscriptions.
      const subscription = (event: InvalidationEvent) => listener(event);
      listeners.add(subscription);
      try {
        await serially(async () => {
          if (stopListening === null && listeners.size > 0) {
            stopListening = await connection.listen(channel, deliver);
          }
        });
      } catch (error) {
        listeners.delete(subscription);
        throw error;
      }
      let active = true;
      return async () => {
        if (!active) return;
        active = false;
        listeners.delete(subscription);
        await serially(async () => {
          if (stopListening !== null && listeners.size === 0) {
            const stop = stopListening;
            stopListening = null;
            await stop();
          }
        });
      };
    },
  } satisfies InvalidationBus;
}

function listenSource(
  connection: PgListenConnection | PgliteListenConnection,
  onError: (error: unknown) => void,
): PgliteListenConnection {
  return 'listen' in connection ? connection : pgListenSource(connection, onError);
}

/** Gives a pg `Client` PGlite's listen shape. */
function pgListenSource(
  client: PgListenConnection,
  onError: (error: unknown) => void,
): PgliteListenConnection {
  // For the bus's whole life, not only while subscribed: the connection is the bus's alone,
  // and a client with no 'error' listener crashes the process when its connection drops,
  // which can happen after the last unsubscribe too (a dead socket reports twice).
  client.on('error', onError);
  return {
    async listen(channel, callback) {
      const onNotification = (message: PgNotification) => {
        if (message.channel === channel) callback(message.payload ?? '');
      };
      client.on('notification', onNotification);
      try {
        await client.query(`LISTEN "${channel}"`);
      } catch (error) {
        client.removeListener('notification', onNotification);
        throw error;
      }
      return async () => {
        try {
          await client.query(`UNLISTEN "${channel}"`);
        } finally {
          client.removeListener('notification', onNotification);
        }
      };
    },
  };
}
