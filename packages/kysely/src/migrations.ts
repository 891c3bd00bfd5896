import { sql } from 'kysely';
import { type AnyKysely, type TableNames, type TableOptions, tableNames } from './table.js';

/**
 * Creates the table and its indexes unless they exist. Written for `CREATE ... IF NOT EXISTS`
 * so that running it again, or on a database an older version already set up, is harmless.
 */
async function createKeyTable(db: AnyKysely, names: TableNames): Promise<void> {
  // "C" collation: ids, owners and lookups are opaque ASCII tokens; byte order makes the list
  // order (id desc on equal createdAt) the same as the other stores' on any database locale,
  // and comparisons cheaper.
  const opaque = sql`text collate "C"`;
  await db.schema
    .createTable(names.table)
    .ifNotExists()
    .addColumn('id', opaque, (col) => col.notNull())
    .addColumn('owner_id', opaque, (col) => col.notNull())
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('lookup', opaque, (col) => col.notNull())
    .addColumn('hash', 'text', (col) => col.notNull())
    .addColumn('key_prefix', 'text', (col) => col.notNull())
    .addColumn('key_suffix', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addColumn('last_used_at', 'timestamptz')
    .addPrimaryKeyConstraint(names.primaryKey, ['id'])
    .execute();
  await db.schema
    .createIndex(names.lookupIndex)
    .ifNotExists()
    .unique()
    .on(names.table)
    .column('lookup')
    .execute();
  // Serves listByOwner in index order, and the per-owner count behind the cap.
  await db.schema
    .createIndex(names.ownerIndex)
    .ifNotExists()
    .on(names.table)
    .columns(['owner_id', 'created_at desc', 'id desc'])
    .execute();
}

/**
 * Adds the lifecycle columns (v2) unless they exist. Rows written before read as a key that
 * never expires, holds every scope, has empty metadata and was made by the host's code: the
 * defaults are constants, so Postgres records them once instead of rewriting the table.
 */
async function addLifecycleColumns(db: AnyKysely, names: TableNames): Promise<void> {
  const t = sql.table(names.table);
  // scopes: text[], a flat list of short tokens; SQL can test one with `= any(scopes)`.
  // metadata: json rather than jsonb. jsonb reorders an object's keys (shortest first) and
  // refuses some strings JSON.stringify writes ("\u0000", lone surrogates); json keeps the
  // host's text as given, and keyward never queries inside it.
  await sql`
    alter table ${t}
      add column if not exists expires_at timestamptz,
      add column if not exists scopes text[] not null default '{*}',
      add column if not exists metadata json not null default '{}',
      add column if not exists created_by text collate "C"`.execute(db);
  // The cascade's step from a key to the keys it created. Partial: keys made by the host's
  // code (created_by null) are most keys, and never a step of it.
  await db.schema
    .createIndex(names.createdByIndex)
    .ifNotExists()
    .on(names.table)
    .columns(['owner_id', 'created_by'])
    .where(sql.ref('created_by'), 'is not', null)
    .execute();
}

/**
 * Adds the rate-limit and credit columns unless they exist (docs/design.md, "Rate limits and
 * credits"). The window's count and the balance live on the key's own row, so a claim is one
 * `UPDATE … RETURNING` and deleting the key deletes them. Earlier rows read as a key with no
 * limit and no credits.
 */
async function addRateLimitColumns(db: AnyKysely, names: TableNames): Promise<void> {
  await sql`
    alter table ${sql.table(names.table)}
      add column if not exists rate_limit integer,
      add column if not exists rate_window_sec integer,
      add column if not exists window_start bigint not null default 0,
      add column if not exists window_used integer not null default 0,
      add column if not exists credits_remaining integer,
      add column if not exists credits_refill_amount integer,
      add column if not exists credits_refill_every text,
      add column if not exists credits_strict boolean not null default false,
      add column if not exists credits_reset_at bigint`.execute(db);
}

/**
 * Adds the leak columns unless they exist: when a leak of the key was confirmed (and it was
 * quarantined), and who reported it. Rows written before read as never reported; both
 * columns are nullable with no default, so Postgres rewrites nothing.
 */
async function addLeakColumns(db: AnyKysely, names: TableNames): Promise<void> {
  await sql`
    alter table ${sql.table(names.table)}
      add column if not exists leaked_at timestamptz,
      add column if not exists leak_source text`.execute(db);
}

/**
 * The invalidation log (docs/design.md, "Invalidation log"): one row per event, numbered
 * by a bigserial. Appends are serialized (see postgres-log-bus.ts), so numbers become
 * visible in order; rows are trimmed by the appenders, oldest first.
 */
async function createLogTable(db: AnyKysely, names: TableNames): Promise<void> {
  await db.schema
    .createTable(names.logTable)
    .ifNotExists()
    .addColumn('seq', 'bigserial', (col) => col.primaryKey())
    .addColumn('payload', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
}

/**
 * Creates keyward's table and indexes, or brings a table an older version created up to date,
 * for hosts that do not run Kysely's `Migrator`. Idempotent, and safe to call from every
 * instance at boot: concurrent calls queue on an advisory lock, because concurrent
 * `CREATE TABLE IF NOT EXISTS` can still fail in Postgres. Given a transaction, it runs
 * inside it.
 */
export async function migrate(db: AnyKysely, options: TableOptions = {}): Promise<void> {
  const names = tableNames(options);
  const run = async (trx: AnyKysely) => {
    await sql`select pg_advisory_xact_lock(hashtext('keyward:migrate'), hashtext(${names.table}))`.execute(
      trx,
    );
    await createKeyTable(trx, names);
    await addLifecycleColumns(trx, names);
    await addRateLimitColumns(trx, names);
    await addLeakColumns(trx, names);
    // Its own lock: stores with different tables may share one log.
    await sql`select pg_advisory_xact_lock(hashtext('keyward:migrate'), hashtext(${names.logTable}))`.execute(
      trx,
    );
    await createLogTable(trx, names);
  };
  const executor = db.withoutPlugins();
  if (executor.isTransaction) await run(executor);
  else await executor.transaction().execute(run);
}

/** Kysely's `Migration`, declared here by shape: kysely 0.29 moved its own types to
 * `kysely/migration`, and this package supports 0.28 and 0.29. */
export interface KeywardMigration {
  up(db: AnyKysely): Promise<void>;
  down(db: AnyKysely): Promise<void>;
}

/** Kysely's `MigrationProvider`, by shape (see `KeywardMigration`). */
export interface KeywardMigrationProvider {
  getMigrations(): Promise<Record<string, KeywardMigration>>;
}

/**
 * keyward's migrations, keyed by name, for hosts that run Kysely's `Migrator` (pass
 * `{ provider: keywardMigrationProvider() }`, or spread `await provider.getMigrations()` into
 * their own provider). Names start with `keyward_`, so they sort after migrations named by date or number.
 */
export function keywardMigrationProvider(options: TableOptions = {}): KeywardMigrationProvider {
  const names = tableNames(options);
  const migrations: Record<string, KeywardMigration> = {
    [`keyward_0001_create_${names.table}`]: {
      up: (db) => createKeyTable(db.withoutPlugins(), names),
      down: (db) => db.withoutPlugins().schema.dropTable(names.table).ifExists().execute(),
    },
    [`keyward_0002_lifecycle_${names.table}`]: {
      up: (db) => addLifecycleColumns(db.withoutPlugins(), names),
      // Dropping created_by drops its index too.
      down: async (db) => {
        await sql`
          alter table ${sql.table(names.table)}
            drop column if exists expires_at,
            drop column if exists scopes,
            drop column if exists metadata,
            drop column if exists created_by`.execute(db.withoutPlugins());
      },
    },
    [`keyward_0003_invalidation_log_${names.table}`]: {
      up: (db) => createLogTable(db.withoutPlugins(), names),
      down: (db) => db.withoutPlugins().schema.dropTable(names.logTable).ifExists().execute(),
    },
    [`keyward_0004_rate_limits_${names.table}`]: {
      up: (db) => addRateLimitColumns(db.withoutPlugins(), names),
      down: async (db) => {
        await sql`
          alter table ${sql.table(names.table)}
            drop column if exists rate_limit,
            drop column if exists rate_window_sec,
            drop column if exists window_start,
            drop column if exists window_used,
            drop column if exists credits_remaining,
            drop column if exists credits_refill_amount,
            drop column if exists credits_refill_every,
            drop column if exists credits_strict,
            drop column if exists credits_reset_at`.execute(db.withoutPlugins());
      },
    },
    [`keyward_0005_leaks_${names.table}`]: {
      up: (db) => addLeakColumns(db.withoutPlugins(), names),
      down: async (db) => {
        await sql`
          alter table ${sql.table(names.table)}
            drop column if exists leaked_at,
            drop column if exists leak_source`.execute(db.withoutPlugins());
      },
    },
  };
  return { getMigrations: async () => migrations };
}
