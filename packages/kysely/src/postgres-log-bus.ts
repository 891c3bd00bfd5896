import {
  busRetryDelay,
  type InvalidationBus,
  type LogBusSettings,
  type LogEntry,
  type LogRead,
  logBus,
  logRetention,
} from '@keyward/core';
import { sql } from 'kysely';
import {
  DEFAULT_CHANNEL,
  type ListenSource,
  listenSource,
  type PgListenClient,
  type PgListenConnection,
  type PgliteListenConnection,
} from './postgres-bus.js';
import { type AnyKysely, tableNames } from './table.js';

export interface PostgresLogBusOptions extends LogBusSettings {
  /** Appends to and reads the log; any Kysely on the database, e.g. the store's. */
  db: AnyKysely;
  /** The log's table, created by `migrate()` or the `keyward_0003_invalidation_log_<table>`
   * migration. @default 'keyward_invalidation_log' */
  logTable?: string;
  /**
   * Optional wake-ups: a NOTIFY carrying the new entry's number follows each append, so an
   * instance listening reads at once instead of at its next heartbeat. Give `connect` (a
   * new pg `Client` for the bus alone, reopened with backoff when it drops) or
   * `connection` (PGlite, or a pg `Client`). Without either, instances poll every
   * `heartbeatMs`. Losing a notification loses nothing: it only wakes the reader.
   */
  connect?: () => Promise<PgListenClient>;
  connection?: PgListenConnection | PgliteListenConnection;
  /** The NOTIFY channel, a lower-case identifier. @default 'keyward_invalidation' */
  channel?: string;
}

/** Entries read at once; a longer backlog is read in several batches. */
const READ_BATCH = 1000;
/** Every this many appends, the appender trims the log. */
const TRIM_EVERY = 64n;
/** A trim looks at this many of the oldest entries at most, so its cost is bounded
 * whatever the retention; more than `TRIM_EVERY`, so trimming keeps up. */
const TRIM_SCAN = 1000;

/**
 * An invalidation bus over a Postgres table (docs/design.md, "Invalidation log"): each
 * event is a row numbered by a bigserial, each instance remembers the last number it
 * applied and reads what follows, so a connection lost for a while loses no event. Works on
 * a server and on PGlite. The table comes from `migrate()` or `keywardMigrationProvider()`.
 */
export function postgresLogBus(options: PostgresLogBusOptions): InvalidationBus {
  const { onError } = options;
  const { logTable } = tableNames({ logTable: options.logTable });
  const channel = options.channel ?? DEFAULT_CHANNEL;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) {
    throw new TypeError(
      `keyward: channel must be a lower-case identifier of at most 63 characters, got ${JSON.stringify(channel)}.`,
    );
  }
  const { maxEntries, maxAgeMs } = logRetention(options);
  const db = options.db.withoutPlugins();
  const table = sql.table(logTable);
  const listen: ListenSource | undefined =
    options.connect || options.connection
      ? listenSource(
          { db: options.db, connect: options.connect, connection: options.connection, onError },
          onError,
        )
      : undefined;

  // Set by a notification; a wait that starts after one returns at once. Cleared when a
  // read is sent, since that read sees whatever the notification announced.
  let notified = false;
  let wake: (() => void) | undefined;
  // Notified entries (`<seq> <payload>`, sent on commit), kept until a wait hands over
  // those that follow its position. Early ones (`- <payload>`, sent beside the append, so
  // as fast as a plain NOTIFY bus) change no position and go to logBus as they arrive. An
  // event that comes both ways is applied once (logBus skips a payload it delivered lately).
  let pending: { seq: bigint; payload: string }[] = [];
  let applyEarly: (payload: string) => void = () => {};
  const onNotify = (message?: string) => {
    // A bare event: a publisher on the same channel that does not append (postgresBus,
    // e.g. the CLI's). Applied as an early entry; it is not in the log, so not replayed.
    if (message?.startsWith('{')) {
      applyEarly(message);
      return;
    }
    notified = true;
    const space = message?.indexOf(' ') ?? -1;
    if (message !== undefined && space > 0) {
      const head = message.slice(0, space);
      const payload = message.slice(space + 1);
      if (head === '-') {
        applyEarly(payload);
        return;
      }
      if (/^[0-9]{1,19}$/.test(head) && pending.length < READ_BATCH) {
        pending.push({ seq: BigInt(head), payload });
      }
    }
    wake?.();
  };
  /** The notified entries that directly follow `position`. */
  const takeNotified = (position: string) => {
    let at = BigInt(position);
    const entries: LogEntry[] = [];
    for (const entry of pending.sort((x, y) => (x.seq < y.seq ? -1 : x.seq > y.seq ? 1 : 0))) {
      if (entry.seq <= at) continue;
      if (entry.seq !== at + 1n) break;
      at = entry.seq;
      entries.push({ position: String(entry.seq), payload: entry.payload });
    }
    pending = [];
    return entries.length > 0 || at !== BigInt(position)
      ? { entries, position: String(at) }
      : undefined;
  };
  let listening = false;
  let stopListen: (() => Promise<void>) | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let attempts = 0;

  /** LISTENs, and listens again with backoff whenever a `connect` connection is lost. */
  async function startListening(): Promise<void> {
    if (!listen || !listening) return;
    try {
      stopListen = await listen.listen(channel, onNotify, (error) => {
        onError(error);
        stopListen = undefined;
        onNotify(); // read now: a notification may have been lost with the connection
        scheduleListen();
      });
      attempts = 0;
    } catch (error) {
      if (attempts === 0) {
        onError(
          new Error(`keyward: the log bus could not LISTEN on "${channel}"; polling meanwhile.`, {
            cause: error,
          }),
        );
      }
      scheduleListen();
    }
  }
  function scheduleListen(): void {
    if (!listening) return;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => void startListening(), busRetryDelay(attempts++));
    retryTimer.unref();
  }

  /**
   * Deletes the entries more than `maxEntries` behind `seq` (an entry just appended) or
   * older than `maxAgeMs`, among the oldest `TRIM_SCAN`; never `seq` itself, so the newest
   * entry always stays. Not part of every append: planned and run on each, it cost an
   * append three times its time (a scan of the whole table, too, before it looked at the
   * oldest entries only). Rows are numbered in time order, so the oldest are those due.
   */
  async function trim(seq: string): Promise<void> {
    await sql`
      delete from ${table}
      where seq in (
          select seq from ${table} where seq < ${seq}::bigint order by seq limit ${TRIM_SCAN}
        )
        and (seq <= ${seq}::bigint - ${maxEntries}
             or created_at < now() - make_interval(secs => ${maxAgeMs / 1000}))`.execute(db);
  }

  return logBus(
    {
      async append(payload) {
        // Early: a plain NOTIFY with the entry, so listeners apply it without waiting for
        // the append's commit (its WAL flush). Sent before the append, not beside it:
        // Postgres hands a listener no notification queued after one of a transaction
        // still committing. Only an optimisation: the append is what counts, and its
        // failure is what is thrown.
        await sql`select pg_notify(${channel}, ${`- ${payload}`})`
          .execute(db)
          .catch(() => undefined);
        // One statement, so one round trip. The advisory lock (held to commit) makes
        // appends one at a time: a number is then visible before any later one, so a
        // reader that has seen n has seen everything below n. The NOTIFY, delivered on
        // commit and in commit order, carries the number and the entry, which a reader at
        // the number before applies without a read.
        const { rows } = await sql<{ seq: string }>`
          with locked as (
            select pg_advisory_xact_lock(hashtext('keyward:log'), hashtext(${logTable}))
          ), added as (
            insert into ${table} (payload) select ${payload} from locked returning seq
          )
          select seq::text as seq, pg_notify(${channel}, seq::text || ' ' || ${payload})
          from added`.execute(db);
        const seq = rows[0]?.seq;
        // The event is in the log: a failed trim is reported, not thrown (a publish that
        // failed would be published again), and the next one catches up.
        if (seq !== undefined && BigInt(seq) % TRIM_EVERY === 0n) await trim(seq).catch(onError);
      },

      async head() {
        try {
          const { rows } = await sql<{ hi: string | null }>`
            select max(seq)::text as hi from ${table}`.execute(db);
          return rows[0]?.hi ?? '0';
        } catch (error) {
          if ((error as { code?: unknown }).code !== '42P01') throw error;
          throw new Error(
            `keyward: table "${logTable}" does not exist; run migrate(db) (or the keyward_0003_invalidation_log_<table> migration) first.`,
            { cause: error },
          );
        }
      },

      async read(position): Promise<LogRead> {
        notified = false;
        // One statement, one snapshot: the bounds and the entries agree.
        const { rows } = await sql<{
          lo: string | null;
          hi: string | null;
          seq: string | null;
          payload: string | null;
        }>`
          with bounds as (select min(seq) as lo, max(seq) as hi from ${table})
          select bounds.lo::text as lo, bounds.hi::text as hi, e.seq::text as seq, e.payload
          from bounds left join lateral (
            select seq, payload from ${table}
            where seq > ${position}::bigint order by seq limit ${READ_BATCH}
          ) e on true`.execute(db);
        const first = rows[0];
        const at = BigInt(position);
        const lo = first?.lo == null ? null : BigInt(first.lo);
        const hi = first?.hi == null ? null : BigInt(first.hi);
        const entries = rows
          .filter((row) => row.seq !== null)
          .map((row) => ({ position: row.seq as string, payload: row.payload ?? '' }));
        const last = entries.at(-1)?.position;
        // Trimmed past the position (the newest row always stays), or the table was emptied
        // or made anew behind the reader's back.
        const restarted = hi === null ? at > 0n : hi < at;
        const lost = restarted || (lo !== null && lo > at + 1n);
        return {
          entries,
          lost,
          position: last ?? (restarted ? (first?.hi ?? '0') : position),
          more: entries.length === READ_BATCH,
        };
      },

      async wait(position, waitMs) {
        if (!notified) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, waitMs);
            function done() {
              clearTimeout(timer);
              wake = undefined;
              resolve();
            }
            wake = done;
          });
        }
        return takeNotified(position);
      },

      async start(early) {
        applyEarly = early;
        listening = true;
        notified = false;
        await startListening();
      },

      async stop() {
        listening = false;
        clearTimeout(retryTimer);
        retryTimer = undefined;
        const stop = stopListen;
        stopListen = undefined;
        wake?.();
        await stop?.();
      },
    },
    {
      name: `"${logTable}"`,
      onError,
      heartbeatMs: options.heartbeatMs,
      timeoutMs: options.timeoutMs,
    },
  );
}
