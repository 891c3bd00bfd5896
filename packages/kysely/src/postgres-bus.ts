import {
  busRetryDelay,
  busSubscriptions,
  deliverInvalidationEvent,
  type InvalidationBus,
  serializeInvalidationEvent,
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

/** A pg `Client` the bus opened through `connect`, and so also ends. */
export interface PgListenClient {
  query(text: string): Promise<unknown>;
  on(event: 'notification', listener: (message: PgNotification) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  removeListener(event: 'notification', listener: (message: PgNotification) => void): unknown;
  end(): Promise<void>;
}

/** The part of PGlite the bus uses to listen: PGlite has one session, with its own API. */
export interface PgliteListenConnection {
  listen(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>>;
}

export interface PostgresBusOptions {
  /** Publishes the events (`pg_notify`); any Kysely on the database, e.g. the store's. */
  db: AnyKysely;
  /**
   * Opens a new connected pg `Client` for the bus alone (not one of a pool's), e.g.
   * `async () => { const c = new pg.Client(url); await c.connect(); return c; }`. The bus
   * opens one with its first subscription and ends it after its last; when it drops, the
   * bus reports the error to `onError`, opens another (retrying with backoff, from 100 ms
   * to 30 s) and tells its subscribers that events may have been missed meanwhile (the key
   * service empties its cache). Give this or `connection`.
   */
  connect?: () => Promise<PgListenClient>;
  /**
   * Where this instance listens: the PGlite instance (in-process, it does not drop), or a
   * pg `Client` opened for the bus alone. The bus adds an 'error' listener to a pg client
   * when it is created, for good. A pg client cannot be replaced: if its connection drops,
   * the error goes to `onError` and no further event arrives; use `connect` instead.
   */
  connection?: PgListenConnection | PgliteListenConnection;
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
  const connection = listenSource(options, onError);
  // LISTEN and UNLISTEN run one at a time (subscriptions.serially), so a subscribe racing
  // the last unsubscribe cannot end up with listeners and no LISTEN.
  const subscriptions = busSubscriptions(onError);
  const serially = subscriptions.serially;
  let stopListening: (() => Promise<void>) | null = null;
  // Set from a lost connection until listening again: events published meanwhile are lost.
  let gap = false;
  let retries = 0;
  let retryTimer: NodeJS.Timeout | undefined;

  const deliver = (payload: string) =>
    deliverInvalidationEvent(payload, subscriptions.listeners(), onError, channel);

  /** LISTENs on a fresh connection, and notes when that one is lost. */
  const listen = async (): Promise<() => Promise<void>> => {
    let stop: (() => Promise<void>) | undefined;
    stop = await connection.listen(channel, deliver, (error) => {
      onError(error);
      void serially(async () => {
        // Not if the last subscription ended it meanwhile, or it was already replaced.
        if (stop === undefined || stopListening !== stop) return;
        stopListening = null;
        gap = true;
        void stop().catch(() => undefined);
        await retryListening();
      });
    });
    return stop;
  };

  /** Listens if a subscription needs it and nothing listens. After a lost connection, a
   * failure is retried with backoff until it works or the last subscription ends, and a
   * success tells every subscription that events may have been missed. Runs inside
   * `serially`. */
  const ensureListening = async (): Promise<void> => {
    if (stopListening !== null || subscriptions.size === 0) return;
    clearTimeout(retryTimer);
    retryTimer = undefined;
    try {
      stopListening = await listen();
    } catch (error) {
      if (gap) {
        retryTimer = setTimeout(() => void serially(retryListening), busRetryDelay(retries++));
        retryTimer.unref();
      }
      throw error;
    }
    if (!gap) return;
    gap = false;
    retries = 0;
    subscriptions.each((subscription) => subscription.onResync?.());
  };
  const retryListening = () =>
    ensureListening().catch((cause: unknown) =>
      onError(
        new Error(`keyward: the bus could not listen again on channel "${channel}".`, { cause }),
      ),
    );

  /** Ends the LISTEN once no subscription is left. Runs inside `serially`. */
  const stopIfUnused = async (): Promise<void> => {
    if (subscriptions.size > 0) return;
    clearTimeout(retryTimer);
    retryTimer = undefined;
    gap = false;
    if (stopListening !== null) {
      const stop = stopListening;
      stopListening = null;
      await stop();
    }
  };

  return {
    async publish(event) {
      // Only the two fields go on the wire, whatever else the caller's object holds.
      const payload = serializeInvalidationEvent(event);
      await sql`select pg_notify(${channel}, ${payload})`.execute(executor);
    },

    subscribe: (listener, subscribeOptions) =>
      // Also while a lost connection waits for its retry: this subscription needs the
      // LISTEN now, or a failure.
      subscriptions.add(listener, subscribeOptions, ensureListening, stopIfUnused),
  } satisfies InvalidationBus;
}

/** Where the bus listens, whatever the connection: `listen` resolves once LISTEN is in
 * force, and calls `onLost` at most once if that connection is lost and can be replaced
 * (a connection from `connect`). */
export interface ListenSource {
  listen(
    channel: string,
    callback: (payload: string) => void,
    onLost: (error: unknown) => void,
  ): Promise<() => Promise<void>>;
}

export function listenSource(
  options: PostgresBusOptions,
  onError: (error: unknown) => void,
): ListenSource {
  const { connect, connection } = options;
  if ((connect === undefined) === (connection === undefined)) {
    throw new TypeError('keyward: postgresBus() needs exactly one of `connect` and `connection`.');
  }
  if (connect) return reconnectingPgSource(connect);
  if (connection && 'listen' in connection) {
    return { listen: (channel, callback) => connection.listen(channel, callback) };
  }
  return pgListenSource(connection as PgListenConnection, onError);
}

/** Listens on a pg `Client`, with PGlite's `listen` shape. */
async function listenOnPg(
  client: PgListenConnection,
  channel: string,
  callback: (payload: string) => void,
): Promise<() => Promise<void>> {
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
}

/** Gives a pg `Client` the host owns PGlite's listen shape. */
function pgListenSource(
  client: PgListenConnection,
  onError: (error: unknown) => void,
): ListenSource {
  // For the bus's whole life, not only while subscribed: the connection is the bus's alone,
  // and a client with no 'error' listener crashes the process when its connection drops,
  // which can happen after the last unsubscribe too (a dead socket reports twice).
  client.on('error', onError);
  return { listen: (channel, callback) => listenOnPg(client, channel, callback) };
}

/** A client per LISTEN from `connect`: opened by `listen`, ended by the function it
 * returns, and reported lost at its first 'error' or 'end' that the bus did not cause. */
function reconnectingPgSource(connect: () => Promise<PgListenClient>): ListenSource {
  return {
    async listen(channel, callback, onLost) {
      const client = await connect();
      let ending = false;
      let listening = false;
      let lost: { error: unknown } | undefined;
      const lose = (error: unknown) => {
        if (ending || lost) return;
        lost = { error };
        // Before LISTEN is in force, listen() itself fails instead.
        if (listening) onLost(error);
      };
      // Stays for the client's whole life: a dead socket can report twice, and a pg client
      // with no 'error' listener would crash the process.
      client.on('error', lose);
      client.on('end', () => lose(new Error('keyward: the LISTEN connection ended.')));
      let unlisten: () => Promise<void>;
      try {
        unlisten = await listenOnPg(client, channel, callback);
        if (lost) throw lost.error;
      } catch (error) {
        ending = true;
        await client.end().catch(() => undefined);
        throw error;
      }
      listening = true;
      return async () => {
        ending = true;
        try {
          if (!lost) await unlisten();
        } finally {
          await client.end();
        }
      };
    },
  };
}
