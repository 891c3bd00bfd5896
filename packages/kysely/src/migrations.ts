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
 * Creates keyward's table and indexes, for hosts that do not run Kysely's `Migrator`.
 * Idempotent, and safe to call from every instance at boot: concurrent calls queue on an
 * advisory lock, because concurrent `CREATE TABLE IF NOT EXISTS` can still fail in Postgres.
 * Given a transaction, it runs inside it.
 */
export async function migrate(db: AnyKysely, options: TableOptions = {}): Promise<void> {
  const names = tableNames(options);
  const run = async (trx: AnyKysely) => {
    await sql`select pg_advisory_xact_lock(hashtext('keyward:migrate'), hashtext(${names.table}))`.execute(
      trx,
    );
    await createKeyTable(trx, names);
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
  };
  return { getMigrations: async () => migrations };
}
