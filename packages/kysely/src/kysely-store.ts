import {
  type InsertResult,
  KeyCollisionError,
  type KeyStore,
  type LastUsedUpdate,
  type StoredCredits,
  type StoredKey,
} from '@keyward/core';
import { type CompiledQuery, type Kysely, sql } from 'kysely';
import { misconfiguration } from './config-errors.js';
import {
  type AnyKysely,
  KEY_COLUMNS,
  type KeyRow,
  type KeywardTables,
  type TableOptions,
  tableNames,
} from './table.js';

export interface KyselyStoreOptions extends TableOptions {}

type RollResult = Awaited<ReturnType<KeyStore['roll']>>;

/**
 * The keyward store on Postgres (a server, or PGlite) through the host's Kysely. It opens no
 * connection: it runs on `db`, and ignores `db`'s plugins (a `CamelCasePlugin` would rename
 * its columns). Run `migrate(db)` or the migration provider first.
 *
 * `db` may be a Kysely `Transaction`, for a host that creates a key along with rows of its
 * own; that transaction must then be READ COMMITTED (Postgres's default) for the cap to hold.
 */
export function kyselyStore(db: AnyKysely, options: KyselyStoreOptions = {}): KeyStore {
  const names = tableNames(options);
  const { table } = names;
  const q = db.withoutPlugins() as Kysely<KeywardTables>;
  const t = sql.table(table);
  // The cold path's one read, built and compiled once: per call, that cost about 0.15 of the
  // 0.7 ms the read took here right after an argon2 verify. Only the parameter changes.
  const findByLookupQuery = q
    .selectFrom(table)
    .select(KEY_COLUMNS)
    .where('lookup', '=', '')
    .compile();

  const inTransaction = <T>(work: (trx: Kysely<KeywardTables>) => Promise<T>): Promise<T> => {
    // A host's transaction is used as is; the lock then lasts until the host commits.
    if (q.isTransaction) return work(q);
    // READ COMMITTED whatever the database's default: under REPEATABLE READ the count would
    // read the snapshot taken before the lock was granted, and miss the keys it waited for.
    return q.transaction().setIsolationLevel('read committed').execute(work);
  };

  // Serializes the writes that add keys to one owner, or remove a tree of them (not everyone's);
  // the lock is released at commit, after which the next waiter's fresh READ COMMITTED
  // snapshot sees what this transaction wrote.
  const lockOwner = (trx: Kysely<KeywardTables>, ownerId: string) =>
    sql`select pg_advisory_xact_lock(hashtext(${table}), hashtext(${ownerId}))`.execute(trx);

  /** Inserts `key` unless its owner holds `maxKeysPerOwner` keys; `true` if it did. Run it
   * holding the owner's lock. */
  const insertUnderCap = async (
    trx: Kysely<KeywardTables>,
    key: StoredKey,
    maxKeysPerOwner: number,
    window: { start: number; used: number } = { start: 0, used: 0 },
  ): Promise<boolean> => {
    const credits = creditColumns(key.credits);
    const result = await sql<{ id: string }>`
      insert into ${t} (id, owner_id, name, lookup, hash, key_prefix, key_suffix, created_at,
        last_used_at, expires_at, scopes, metadata, created_by, rate_limit, rate_window_sec,
        window_start, window_used, credits_remaining, credits_refill_amount,
        credits_refill_every, credits_strict, credits_reset_at, leaked_at,
        leak_source)
      select ${key.id}::text, ${key.ownerId}::text, ${key.name}::text, ${key.lookup}::text,
        ${key.hash}::text, ${key.keyPrefix}::text, ${key.keySuffix}::text,
        ${timestamp(key.createdAt)}::timestamptz, ${key.lastUsedAt && timestamp(key.lastUsedAt)}::timestamptz,
        ${key.expiresAt && timestamp(key.expiresAt)}::timestamptz, ${key.scopes}::text[],
        ${JSON.stringify(key.metadata)}::json, ${key.createdBy}::text,
        ${key.rateLimit?.limit ?? null}::int, ${key.rateLimit?.windowSec ?? null}::int,
        ${window.start}::bigint, ${window.used}::int,
        ${credits.credits_remaining}::int, ${credits.credits_refill_amount}::int,
        ${credits.credits_refill_every}::text, ${credits.credits_strict}::boolean,
        ${credits.credits_reset_at}::bigint,
        ${key.leakedAt && timestamp(key.leakedAt)}::timestamptz, ${key.leakSource}::text
      where (select count(*) from ${t} where owner_id = ${key.ownerId}::text) < ${maxKeysPerOwner}::int
      returning id`.execute(trx);
    return result.rows.length > 0;
  };

  /** Runs `write`, turning a unique violation on the id or the lookup into KeyCollisionError. */
  const mappingCollisions = async <T>(write: () => Promise<T>): Promise<T> => {
    try {
      return await write();
    } catch (error) {
      const field = collisionField(error, names.primaryKey, names.lookupIndex);
      // The driver's error is dropped on purpose: its detail quotes the lookup part.
      if (field) throw new KeyCollisionError(field);
      throw error;
    }
  };

  const store = {
    async insert(key, { maxKeysPerOwner }): Promise<InsertResult> {
      const inserted = await mappingCollisions(() =>
        inTransaction(async (trx) => {
          await lockOwner(trx, key.ownerId);
          return insertUnderCap(trx, key, maxKeysPerOwner);
        }),
      );
      return inserted ? { ok: true } : { ok: false, reason: 'limit_reached' };
    },

    async findByLookup(lookup) {
      const query: CompiledQuery<KeyRow> = { ...findByLookupQuery, parameters: [lookup] };
      const { rows } = await q.executeQuery(query);
      const [row] = rows;
      return row ? toStoredKey(row) : null;
    },

    async listByOwner(ownerId) {
      const rows = await q
        .selectFrom(table)
        .select(KEY_COLUMNS)
        .where('owner_id', '=', ownerId)
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .execute();
      return rows.map(toStoredKey);
    },

    async update(ownerId, id, changes) {
      const { name, metadata, expiresAt, rateLimit, credits, leak } = changes;
      const set = {
        ...(rateLimit !== undefined && {
          rate_limit: rateLimit?.limit ?? null,
          rate_window_sec: rateLimit?.windowSec ?? null,
        }),
        ...(credits !== undefined && creditColumns(credits)),
        ...(name !== undefined && { name }),
        ...(metadata !== undefined && {
          metadata: sql<KeyRow['metadata']>`${JSON.stringify(metadata)}::json`,
        }),
        // least() skips a null (never expires) operand. Evaluated on the row as the UPDATE
        // finds it, after any concurrent update committed: two racing updates keep the earlier.
        ...(expiresAt !== undefined && {
          expires_at: sql<Date>`least(expires_at, ${timestamp(expiresAt)}::timestamptz)`,
        }),
        // The first mark stays, as the row is when the UPDATE finds it: a repeated or racing
        // report changes neither column.
        ...(leak !== undefined && {
          leaked_at: sql<Date>`coalesce(leaked_at, ${timestamp(leak.at)}::timestamptz)`,
          leak_source: sql<string>`case when leaked_at is null then ${leak.source}::text else leak_source end`,
        }),
      };
      const row =
        Object.keys(set).length === 0
          ? await q
              .selectFrom(table)
              .select(KEY_COLUMNS)
              .where('owner_id', '=', ownerId)
              .where('id', '=', id)
              .executeTakeFirst()
          : await q
              .updateTable(table)
              .set(set)
              .where('owner_id', '=', ownerId)
              .where('id', '=', id)
              .returning(KEY_COLUMNS)
              .executeTakeFirst();
      return row ? toStoredKey(row) : null;
    },

    async delete(ownerId, id) {
      // RETURNING rather than the affected-row count, which not every dialect reports.
      const row = await q
        .deleteFrom(table)
        .where('owner_id', '=', ownerId)
        .where('id', '=', id)
        .returning('id')
        .executeTakeFirst();
      return row !== undefined;
    },

    async deleteTree(ownerId, id) {
      const deleted = await inTransaction(async (trx) => {
        // The insert's lock: a key being created by one in the tree either committed before
        // this statement's snapshot, and goes with the tree, or waits until the tree is gone.
        await lockOwner(trx, ownerId);
        // UNION, not UNION ALL: a cycle in created_by (which keyward never writes) ends the
        // recursion instead of looping.
        const { rows } = await sql<{ id: string }>`
          with recursive tree (id) as (
            select id from ${t} where owner_id = ${ownerId}::text and id = ${id}::text
            union
            select k.id from ${t} k join tree on k.created_by = tree.id
            where k.owner_id = ${ownerId}::text
          )
          delete from ${t} where owner_id = ${ownerId}::text and id in (select id from tree)
          returning id`.execute(trx);
        return rows.map((row) => row.id);
      });
      // DELETE ... RETURNING has no order: the named key first, then the others by id. (A plain
      // delete racing this one may have taken the named key itself: it is then not listed.)
      const rest = deleted.filter((deletedId) => deletedId !== id).sort();
      return deleted.includes(id) ? [id, ...rest] : rest;
    },

    async roll(ownerId, id, next, { previousExpiresAt, now, maxKeysPerOwner }) {
      return mappingCollisions(() =>
        inTransaction(async (trx): Promise<RollResult> => {
          await lockOwner(trx, ownerId);
          // FOR UPDATE: a concurrent delete of the old key (which takes no owner lock) waits
          // for this commit, so the row found here is still there to shorten below.
          const { rows } = await sql<KeyRow & { window_start: string; window_used: number }>`
            select ${sql.join(KEY_COLUMNS.map((c) => sql.ref(c)))}, window_start, window_used
            from ${t}
            where owner_id = ${ownerId}::text and id = ${id}::text
              and (expires_at is null or expires_at > ${timestamp(now)}::timestamptz)
            for update`.execute(trx);
          const [old] = rows;
          if (!old) return { ok: false, reason: 'not_found' };
          // The balance moves to the new key, as the row holds it now (docs/design.md,
          // "Changes, roll, revoke, expiry"); so does the current window's count.
          const oldCredits = toStoredKey(old).credits;
          const successor = { ...next, credits: oldCredits };
          const window = { start: Number(old.window_start), used: old.window_used };
          if (!(await insertUnderCap(trx, successor, maxKeysPerOwner, window))) {
            return { ok: false, reason: 'limit_reached' };
          }
          const previous = await trx
            .updateTable(table)
            .set({
              expires_at: sql<Date>`least(expires_at, ${timestamp(previousExpiresAt)}::timestamptz)`,
              ...(oldCredits && {
                credits_remaining: 0,
                credits_refill_amount: null,
                credits_refill_every: null,
                credits_reset_at: now.getTime(),
              }),
            })
            .where('owner_id', '=', ownerId)
            .where('id', '=', id)
            .returning(KEY_COLUMNS)
            .executeTakeFirstOrThrow();
          return { ok: true, previous: toStoredKey(previous) };
        }),
      );
    },

    async recordLastUsed(updates: readonly LastUsedUpdate[]) {
      if (updates.length === 0) return;
      // One row per id: UPDATE ... FROM applies only one of several matching source rows, and
      // not necessarily the latest.
      const latest = new Map<string, number>();
      for (const { id, lastUsedAt } of updates) {
        const at = lastUsedAt.getTime();
        const seen = latest.get(id);
        if (seen === undefined || at > seen) latest.set(id, at);
      }
      // Sorted, so concurrent batches from several instances lock shared rows in the same
      // order instead of deadlocking.
      const ids = [...latest.keys()].sort();
      const times = ids.map((id) => new Date(latest.get(id) as number).toISOString());
      // The guard keeps lastUsedAt monotonic even against a concurrent writer: under READ
      // COMMITTED, Postgres re-checks it on the newest row version before updating. Rows it
      // would not move forward are left untouched (no dead tuple).
      await sql`
        update ${t} as k set last_used_at = v.at
        from unnest(${ids}::text[], ${times}::timestamptz[]) as v(id, at)
        where k.id = v.id and (k.last_used_at is null or k.last_used_at < v.at)`.execute(q);
    },

    async claimWindow(ownerId, id, { windowStart, limit, want, atLeast }) {
      // One statement: the row is locked (FOR UPDATE) from the read of its count to the
      // write of the new one, so concurrent claims queue and none hands out more than is left.
      const { rows } = await sql<{ granted: number; remaining: number }>`
        with cur as (
          select id, case when window_start < ${windowStart}::bigint then 0 else window_used end as used
          from ${t} where owner_id = ${ownerId}::text and id = ${id}::text
            and window_start <= ${windowStart}::bigint
          for update
        ), g as (
          select id, used, ${grantSql(sql`greatest(0, ${limit}::int - used)`, want, atLeast)} as granted
          from cur
        )
        update ${t} as k set window_start = ${windowStart}::bigint, window_used = g.used + g.granted
        from g where k.id = g.id
        returning g.granted::int as granted,
          greatest(0, ${limit}::int - g.used - g.granted)::int as remaining`.execute(q);
      const [row] = rows;
      return row
        ? { granted: row.granted, remaining: row.remaining }
        : { granted: 0, remaining: 0 };
    },

    async returnWindow(ownerId, id, windowStart, amount) {
      await sql`
        update ${t} set window_used = greatest(0, window_used - ${amount}::int)
        where owner_id = ${ownerId}::text and id = ${id}::text
          and window_start = ${windowStart}::bigint`.execute(q);
    },

    async claimCredits(ownerId, id, { want, atLeast, periodStart }) {
      const { rows } = await sql<{ granted: number; remaining: number; reset_at: string }>`
        with cur as (
          -- Every value read here, from the locked row: after waiting on a concurrent
          -- claim, FOR UPDATE yields its newest version, where a second read of the table
          -- would see the statement's older snapshot.
          select id, credits_remaining, credits_refill_amount, credits_reset_at,
            (credits_refill_amount is not null and ${periodStart}::bigint is not null
              and credits_reset_at < ${periodStart}::bigint) as refill
          from ${t}
          where owner_id = ${ownerId}::text and id = ${id}::text and credits_remaining is not null
          for update
        ), bal as (
          select id,
            case when refill then credits_refill_amount else credits_remaining end as balance,
            case when refill then ${periodStart}::bigint else credits_reset_at end as reset_at
          from cur
        ), g as (
          select id, balance, reset_at, ${grantSql(sql`balance`, want, atLeast)} as granted from bal
        )
        update ${t} as k set credits_remaining = g.balance - g.granted, credits_reset_at = g.reset_at
        from g where k.id = g.id
        returning g.granted::int as granted, (g.balance - g.granted)::int as remaining,
          g.reset_at`.execute(q);
      const [row] = rows;
      return row
        ? { granted: row.granted, remaining: row.remaining, resetAt: Number(row.reset_at) }
        : null;
    },

    async returnCredits(ownerId, id, amount, resetAt) {
      await sql`
        update ${t} set credits_remaining = credits_remaining + ${amount}::int
        where owner_id = ${ownerId}::text and id = ${id}::text and credits_remaining is not null
          and credits_reset_at = ${resetAt}::bigint`.execute(q);
    },

    /** Reads no row but names every column, so a missing table or column fails here. */
    async check() {
      await q.selectFrom(table).select(KEY_COLUMNS).limit(0).execute();
    },
  } satisfies Required<KeyStore>;

  // A missing table fails every call the same way: the error says so, and how to fix it,
  // so that `onError` (and `service.ready()`) tell it from an outage.
  const explain = (error: unknown): never => {
    throw misconfiguration(error, table) ?? error;
  };
  return {
    insert: (key, options) => store.insert(key, options).catch(explain),
    findByLookup: (lookup) => store.findByLookup(lookup).catch(explain),
    listByOwner: (ownerId) => store.listByOwner(ownerId).catch(explain),
    update: (ownerId, id, changes) => store.update(ownerId, id, changes).catch(explain),
    delete: (ownerId, id) => store.delete(ownerId, id).catch(explain),
    deleteTree: (ownerId, id) => store.deleteTree(ownerId, id).catch(explain),
    roll: (ownerId, id, next, options) => store.roll(ownerId, id, next, options).catch(explain),
    recordLastUsed: (updates) => store.recordLastUsed(updates).catch(explain),
    claimWindow: (ownerId, id, claim) => store.claimWindow(ownerId, id, claim).catch(explain),
    returnWindow: (ownerId, id, windowStart, amount) =>
      store.returnWindow(ownerId, id, windowStart, amount).catch(explain),
    claimCredits: (ownerId, id, claim) => store.claimCredits(ownerId, id, claim).catch(explain),
    returnCredits: (ownerId, id, amount, resetAt) =>
      store.returnCredits(ownerId, id, amount, resetAt).catch(explain),
    check: () => store.check().catch(explain),
  };
}

function toStoredKey(row: KeyRow): StoredKey {
  return {
    id: row.id,
    ownerId: row.owner_id,
    name: row.name,
    lookup: row.lookup,
    hash: row.hash,
    keyPrefix: row.key_prefix,
    keySuffix: row.key_suffix,
    createdAt: toDate(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : toDate(row.last_used_at),
    expiresAt: row.expires_at === null ? null : toDate(row.expires_at),
    scopes: row.scopes,
    // A host whose driver is told to leave json as text still gets an object.
    metadata: typeof row.metadata === 'string' ? JSON.parse(row.metadata) : row.metadata,
    createdBy: row.created_by,
    rateLimit:
      row.rate_limit === null || row.rate_window_sec === null
        ? null
        : { limit: row.rate_limit, windowSec: row.rate_window_sec },
    credits:
      row.credits_remaining === null
        ? null
        : {
            remaining: row.credits_remaining,
            refill:
              row.credits_refill_amount === null || row.credits_refill_every === null
                ? null
                : { amount: row.credits_refill_amount, every: row.credits_refill_every },
            strict: row.credits_strict,
            resetAt: Number(row.credits_reset_at ?? 0),
          },
    leakedAt: row.leaked_at === null ? null : toDate(row.leaked_at),
    leakSource: row.leak_source,
  };
}

/** The credit columns for `credits`, all null (and not strict) for none. */
function creditColumns(credits: StoredCredits | null) {
  return {
    credits_remaining: credits?.remaining ?? null,
    credits_refill_amount: credits?.refill?.amount ?? null,
    credits_refill_every: credits?.refill?.every ?? null,
    credits_strict: credits?.strict ?? false,
    credits_reset_at: credits?.resetAt ?? null,
  };
}

/** `leaseGrant` (in @keyward/core) in SQL, on `left` units left. */
function grantSql(left: ReturnType<typeof sql>, want: number, atLeast: number) {
  return sql`(case when ${left} < ${atLeast}::int or ${left} <= 0 then 0
    else least(${left}, greatest(${atLeast}::int, least(${want}::int, ceil((${left})::numeric / 4)::int)))
    end)`;
}

/** Both pg and PGlite return timestamptz as a Date; a host that told its driver to return
 * text gets the same Dates. */
function toDate(value: Date | string): Date {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new TypeError(`keyward: the database returned an unreadable timestamp: ${String(value)}`);
  }
  return date;
}

/** ISO 8601 in UTC: exact to the millisecond, and read the same way by every driver and
 * session time zone (pg would otherwise send the process's local time). */
function timestamp(date: Date): string {
  return date.toISOString();
}

/** Which unique constraint a unique violation (SQLSTATE 23505) hit, if it is one of ours. */
function collisionField(
  error: unknown,
  primaryKey: string,
  lookupIndex: string,
): 'id' | 'lookup' | null {
  if (typeof error !== 'object' || error === null) return null;
  const { code, constraint } = error as { code?: unknown; constraint?: unknown };
  if (code !== '23505') return null;
  if (constraint === primaryKey) return 'id';
  if (constraint === lookupIndex) return 'lookup';
  return null;
}
