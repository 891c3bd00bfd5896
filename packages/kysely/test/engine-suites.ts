/**
 * The tests each engine's file (PGlite, the Postgres server) runs against its own Kysely:
 * the store conformance suite of @keyward/testing, then what is particular to this package.
 * Not shipped (see tsconfig.build.json).
 */
import {
  type InvalidationBus,
  type InvalidationEvent,
  KeyCollisionError,
  type KeyStore,
  type StoredKey,
  serializeInvalidationEvent,
} from '@keyward/core';
import { describeStoreConformance, makeStoredKey } from '@keyward/testing';
import { CamelCasePlugin, type LogEvent, Migrator, sql } from 'kysely';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { kyselyStore } from '../src/kysely-store.js';
import { keywardMigrationProvider, migrate } from '../src/migrations.js';
import {
  type PgListenConnection,
  type PgliteListenConnection,
  postgresBus,
} from '../src/postgres-bus.js';
import { postgresLogBus } from '../src/postgres-log-bus.js';
import { type AnyKysely, DEFAULT_TABLE } from '../src/table.js';

/** Pass `queryLog.record` as the Kysely `log` option to count the statements sent. */
export function queryLog() {
  const statements: string[] = [];
  return {
    statements,
    record(event: LogEvent) {
      statements.push(event.query.sql);
    },
    reset() {
      statements.length = 0;
    },
  };
}

export interface EngineOptions {
  /** The engine's Kysely, built with `log: log.record`, the table already migrated. */
  db(): AnyKysely;
  table: string;
  log: ReturnType<typeof queryLog>;
  /** Stores over separate connections, for the concurrent tests. */
  createPeers?(count: number): Promise<KeyStore[]>;
}

const noCap = { maxKeysPerOwner: 1000 };

/** The columns keyward_0001 creates, in order. */
const V1_COLUMNS = [
  'id',
  'owner_id',
  'name',
  'lookup',
  'hash',
  'key_prefix',
  'key_suffix',
  'created_at',
  'last_used_at',
];
const LIFECYCLE_COLUMNS = ['expires_at', 'scopes', 'metadata', 'created_by'];
const RATE_LIMIT_COLUMNS = [
  'rate_limit',
  'rate_window_sec',
  'window_start',
  'window_used',
  'credits_remaining',
  'credits_refill_amount',
  'credits_refill_every',
  'credits_strict',
  'credits_reset_at',
];

async function columnsOf(db: AnyKysely, table: string): Promise<string[]> {
  const { rows } = await sql<{ column_name: string }>`
    select column_name from information_schema.columns
    where table_schema = current_schema() and table_name = ${table}
    order by ordinal_position`.execute(db);
  return rows.map((row) => row.column_name);
}
const suffix = () => Math.random().toString(36).slice(2, 10);

export function describeKyselyStore(name: string, engine: EngineOptions): void {
  const { table, log } = engine;
  const store = () => kyselyStore(engine.db(), { table });

  describeStoreConformance(name, {
    createStore: store,
    createPeers: engine.createPeers,
    dumpContents: async () => {
      const { rows } = await sql<{ dump: string }>`
        select coalesce(json_agg(k), '[]')::text as dump from ${sql.table(table)} k`.execute(
        engine.db(),
      );
      return rows[0]?.dump ?? '';
    },
  });

  describe(`${name}: table and migrations`, () => {
    const extraTables: string[] = [];
    afterAll(async () => {
      for (const extra of extraTables) {
        await engine.db().schema.dropTable(extra).ifExists().execute();
      }
    });

    it('holds the expected columns: no raw key, no secret, timestamptz times, "C" ids', async () => {
      const { rows } = await sql<{
        column_name: string;
        data_type: string;
        is_nullable: string;
        collation_name: string | null;
      }>`
        select column_name, data_type, is_nullable, collation_name
        from information_schema.columns
        where table_schema = current_schema() and table_name = ${table}
        order by ordinal_position`.execute(engine.db());
      const text = (collation: string | null = null) => ['text', 'NO', collation];
      expect(
        Object.fromEntries(
          rows.map((c) => [c.column_name, [c.data_type, c.is_nullable, c.collation_name]]),
        ),
      ).toEqual({
        id: text('C'),
        owner_id: text('C'),
        name: text(),
        lookup: text('C'),
        hash: text(),
        key_prefix: text(),
        key_suffix: text(),
        created_at: ['timestamp with time zone', 'NO', null],
        last_used_at: ['timestamp with time zone', 'YES', null],
        expires_at: ['timestamp with time zone', 'YES', null],
        scopes: ['ARRAY', 'NO', null],
        metadata: ['json', 'NO', null],
        created_by: ['text', 'YES', 'C'],
        rate_limit: ['integer', 'YES', null],
        rate_window_sec: ['integer', 'YES', null],
        window_start: ['bigint', 'NO', null],
        window_used: ['integer', 'NO', null],
        credits_remaining: ['integer', 'YES', null],
        credits_refill_amount: ['integer', 'YES', null],
        credits_refill_every: ['text', 'YES', null],
        credits_strict: ['boolean', 'NO', null],
        credits_reset_at: ['bigint', 'YES', null],
        leaked_at: ['timestamp with time zone', 'YES', null],
        leak_source: ['text', 'YES', null],
      });
    });

    it('has a primary key on id, a unique index on lookup and an index for newest first', async () => {
      const { rows } = await sql<{ indexname: string; indexdef: string }>`
        select indexname, indexdef from pg_indexes
        where schemaname = current_schema() and tablename = ${table}
        order by indexname`.execute(engine.db());
      expect(rows.map((r) => r.indexname)).toEqual([
        `${table}_created_by_idx`,
        `${table}_lookup_key`,
        `${table}_owner_created_idx`,
        `${table}_pkey`,
      ]);
      const [createdBy, lookup, owner, primary] = rows.map((r) =>
        r.indexdef.replace(/ \S+\./, ' '),
      );
      expect(createdBy).toBe(
        `CREATE INDEX ${table}_created_by_idx ON ${table} USING btree (owner_id, created_by) WHERE (created_by IS NOT NULL)`,
      );
      expect(lookup).toBe(
        `CREATE UNIQUE INDEX ${table}_lookup_key ON ${table} USING btree (lookup)`,
      );
      expect(owner).toBe(
        `CREATE INDEX ${table}_owner_created_idx ON ${table} USING btree (owner_id, created_at DESC, id DESC)`,
      );
      expect(primary).toBe(`CREATE UNIQUE INDEX ${table}_pkey ON ${table} USING btree (id)`);
    });

    it('migrate() run twice more is harmless: the rows stay and nothing is added', async () => {
      const key = await makeStoredKey();
      await store().insert(key, noCap);
      await migrate(engine.db(), { table });
      await migrate(engine.db(), { table });
      expect(await store().findByLookup(key.lookup)).toEqual(key);
    });

    it('concurrent migrate() calls on a new table all succeed', async () => {
      const fresh = `${table}_m${suffix()}`;
      extraTables.push(fresh);
      // On a server, each call's transaction gets its own pooled connection, so they race.
      await Promise.all([1, 2, 3, 4].map(() => migrate(engine.db(), { table: fresh })));
      const key = await makeStoredKey();
      await kyselyStore(engine.db(), { table: fresh }).insert(key, noCap);
      expect(await kyselyStore(engine.db(), { table: fresh }).findByLookup(key.lookup)).toEqual(
        key,
      );
    });

    it("keywardMigrationProvider() migrates up and down under Kysely's Migrator", async () => {
      const fresh = `${table}_p${suffix()}`;
      extraTables.push(fresh, `${fresh}_log`, `${fresh}_migration`, `${fresh}_migration_lock`);
      const migrator = new Migrator({
        db: engine.db(),
        provider: keywardMigrationProvider({ table: fresh, logTable: `${fresh}_log` }),
        migrationTableName: `${fresh}_migration`,
        migrationLockTableName: `${fresh}_migration_lock`,
      });
      const up = await migrator.migrateToLatest();
      expect(up.error).toBeUndefined();
      expect(up.results?.map((r) => [r.migrationName, r.status])).toEqual([
        [`keyward_0001_create_${fresh}`, 'Success'],
        [`keyward_0002_lifecycle_${fresh}`, 'Success'],
        [`keyward_0003_invalidation_log_${fresh}`, 'Success'],
        [`keyward_0004_rate_limits_${fresh}`, 'Success'],
        [`keyward_0005_leaks_${fresh}`, 'Success'],
      ]);
      const key = await makeStoredKey({ leakedAt: new Date(), leakSource: 'github' });
      await kyselyStore(engine.db(), { table: fresh }).insert(key, noCap);
      expect((await migrator.migrateToLatest()).results).toEqual([]);
      const leaksDown = await migrator.migrateDown();
      expect(leaksDown.error).toBeUndefined();
      expect(await columnsOf(engine.db(), fresh)).toEqual([
        ...V1_COLUMNS,
        ...LIFECYCLE_COLUMNS,
        ...RATE_LIMIT_COLUMNS,
      ]);
      const limitsDown = await migrator.migrateDown();
      expect(limitsDown.error).toBeUndefined();
      expect(await columnsOf(engine.db(), fresh)).toEqual([...V1_COLUMNS, ...LIFECYCLE_COLUMNS]);
      const logDown = await migrator.migrateDown();
      expect(logDown.error).toBeUndefined();
      await expect(
        sql`select 1 from ${sql.table(`${fresh}_log`)}`.execute(engine.db()),
      ).rejects.toMatchObject({ code: '42P01' });
      const lifecycleDown = await migrator.migrateDown();
      expect(lifecycleDown.error).toBeUndefined();
      expect(await columnsOf(engine.db(), fresh)).toEqual(V1_COLUMNS);
      const down = await migrator.migrateDown();
      expect(down.error).toBeUndefined();
      await expect(
        kyselyStore(engine.db(), { table: fresh }).findByLookup(key.lookup),
      ).rejects.toMatchObject({ cause: { code: '42P01' } });
    });
    describe('upgrade in place from the v1 table', () => {
      /** A table as keyward_0001 (v1) left it, holding one row written as the v1 store did. */
      const v1Table = async () => {
        const fresh = `${table}_u${suffix()}`;
        extraTables.push(fresh, `${fresh}_log`, `${fresh}_migration`, `${fresh}_migration_lock`);
        const migrator = new Migrator({
          db: engine.db(),
          provider: keywardMigrationProvider({ table: fresh, logTable: `${fresh}_log` }),
          migrationTableName: `${fresh}_migration`,
          migrationLockTableName: `${fresh}_migration_lock`,
        });
        const v1 = await migrator.migrateTo(`keyward_0001_create_${fresh}`);
        expect(v1.error).toBeUndefined();
        expect(await columnsOf(engine.db(), fresh)).toEqual(V1_COLUMNS);
        const key = await makeStoredKey({
          createdAt: new Date('2024-03-14T10:30:00.123Z'),
          lastUsedAt: new Date('2024-04-01T08:00:00.456Z'),
        });
        await sql`
          insert into ${sql.table(fresh)} (id, owner_id, name, lookup, hash, key_prefix,
            key_suffix, created_at, last_used_at)
          values (${key.id}, ${key.ownerId}, ${key.name}, ${key.lookup}, ${key.hash},
            ${key.keyPrefix}, ${key.keySuffix}, ${key.createdAt.toISOString()}::timestamptz,
            ${key.lastUsedAt?.toISOString()}::timestamptz)`.execute(engine.db());
        return { fresh, migrator, key };
      };
      // What a key made before the upgrade reads as: no expiry, every scope, no metadata,
      // made by the host's code. makeStoredKey's defaults are exactly those.
      const expectV1KeyReadsAsV2 = async (fresh: string, key: StoredKey) => {
        const upgraded = kyselyStore(engine.db(), { table: fresh });
        expect(key).toMatchObject({
          expiresAt: null,
          scopes: ['*'],
          metadata: {},
          createdBy: null,
          rateLimit: null,
          credits: null,
        });
        expect(await upgraded.findByLookup(key.lookup)).toEqual(key);
        expect(await upgraded.listByOwner(key.ownerId)).toEqual([key]);
      };

      it('migrate() adds the lifecycle columns; old rows read as never expiring, every scope, no metadata, no creator', async () => {
        const { fresh, key } = await v1Table();
        await migrate(engine.db(), { table: fresh });
        expect(await columnsOf(engine.db(), fresh)).toEqual([
          ...V1_COLUMNS,
          ...LIFECYCLE_COLUMNS,
          ...RATE_LIMIT_COLUMNS,
          'leaked_at',
          'leak_source',
        ]);
        await expectV1KeyReadsAsV2(fresh, key);
        // And the upgraded table takes the whole v2 contract.
        const upgraded = kyselyStore(engine.db(), { table: fresh });
        const child = await makeStoredKey({
          ownerId: key.ownerId,
          createdBy: key.id,
          scopes: ['orders:read'],
          metadata: { z: 1, a: 2 },
        });
        expect(await upgraded.insert(child, noCap)).toEqual({ ok: true });
        expect(await upgraded.update(key.ownerId, key.id, { metadata: { v: 2 } })).toEqual({
          ...key,
          metadata: { v: 2 },
        });
        expect(await upgraded.deleteTree(key.ownerId, key.id)).toEqual([key.id, child.id]);
      });

      it("Kysely's Migrator, given every migration, applies only the ones after keyward_0001 to a v1 table", async () => {
        const { fresh, migrator, key } = await v1Table();
        const up = await migrator.migrateToLatest();
        expect(up.error).toBeUndefined();
        expect(up.results?.map((r) => [r.migrationName, r.status])).toEqual([
          [`keyward_0002_lifecycle_${fresh}`, 'Success'],
          [`keyward_0003_invalidation_log_${fresh}`, 'Success'],
          [`keyward_0004_rate_limits_${fresh}`, 'Success'],
          [`keyward_0005_leaks_${fresh}`, 'Success'],
        ]);
        await expectV1KeyReadsAsV2(fresh, key);
      });
    });
  });

  describe(`${name}: kysely store`, () => {
    it('insert() with an existing id throws KeyCollisionError on field "id"', async () => {
      const first = await makeStoredKey();
      await store().insert(first, noCap);
      const error = await store()
        .insert(await makeStoredKey({ id: first.id }), noCap)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KeyCollisionError);
      expect(error).toMatchObject({ field: 'id' });
    });

    it('insert() with an existing lookup throws KeyCollisionError on field "lookup", quoting nothing', async () => {
      const first = await makeStoredKey();
      await store().insert(first, noCap);
      const error = await store()
        .insert(await makeStoredKey({ lookup: first.lookup }), noCap)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KeyCollisionError);
      expect(error).toMatchObject({ field: 'lookup' });
      expect(JSON.stringify(error) + String(error) + String((error as Error).cause)).not.toContain(
        first.lookup,
      );
    });

    it("metadata comes back with the host's key order, and strings jsonb would refuse", async () => {
      // jsonb would sort these keys (shortest first) and reject \u0000 and a lone surrogate.
      const metadata = { zeta: 1, a: { y: 2, b: 3 }, nul: '\u0000', half: '\ud800', mid: 0.1 };
      const key = await makeStoredKey({ metadata });
      await store().insert(key, noCap);
      const found = await store().findByLookup(key.lookup);
      expect(JSON.stringify(found?.metadata)).toBe(JSON.stringify(metadata));
      const updated = await store().update(key.ownerId, key.id, { metadata: { b: 1, a: 2 } });
      expect(JSON.stringify(updated?.metadata)).toBe('{"b":1,"a":2}');
    });

    it('update() with no changes returns the key as it is, writing nothing', async () => {
      const key = await makeStoredKey({ expiresAt: new Date('2030-01-01T00:00:00.000Z') });
      await store().insert(key, noCap);
      const s = store();
      log.reset();
      expect(await s.update(key.ownerId, key.id, {})).toEqual(key);
      expect(await s.update(`owner_${suffix()}`, key.id, {})).toBeNull();
      expect(log.statements.every((statement) => /^\s*select /.test(statement))).toBe(true);
    });

    it('recordLastUsed() sends exactly one statement per batch, and none for an empty batch', async () => {
      const keys = await Promise.all([1, 2, 3].map(() => makeStoredKey()));
      for (const key of keys) await store().insert(key, noCap);
      const s = store();
      log.reset();
      await s.recordLastUsed([]);
      expect(log.statements).toEqual([]);
      const at = Date.parse('2025-06-01T12:00:00.000Z');
      await s.recordLastUsed(
        keys.flatMap((key, i) => [
          { id: key.id, lastUsedAt: new Date(at + i) },
          { id: key.id, lastUsedAt: new Date(at - 1000) },
        ]),
      );
      expect(log.statements).toHaveLength(1);
      expect(log.statements[0]).toMatch(/^\s*update /);
      for (const [i, key] of keys.entries()) {
        expect((await s.findByLookup(key.lookup))?.lastUsedAt).toEqual(new Date(at + i));
      }
    });

    it('concurrent recordLastUsed() batches leave the latest time', async () => {
      const key = await makeStoredKey();
      await store().insert(key, noCap);
      const peers = engine.createPeers ? await engine.createPeers(4) : [store()];
      const at = Date.parse('2025-06-01T12:00:00.000Z');
      const times = Array.from({ length: 40 }, (_, i) => at + ((i * 7919) % 40));
      await Promise.all(
        times.map((t, i) =>
          (peers[i % peers.length] as KeyStore).recordLastUsed([
            { id: key.id, lastUsedAt: new Date(t) },
          ]),
        ),
      );
      expect((await store().findByLookup(key.lookup))?.lastUsedAt).toEqual(new Date(at + 39));
    });

    it('a timestamp stored with microseconds (by another writer) reads back to the millisecond', async () => {
      const key = await makeStoredKey();
      await store().insert(key, noCap);
      await sql`update ${sql.table(table)} set created_at = '2024-03-14 10:30:00.123987+00'
        where id = ${key.id}`.execute(engine.db());
      const found = await store().findByLookup(key.lookup);
      expect(found?.createdAt.toISOString()).toBe('2024-03-14T10:30:00.123Z');
    });

    it("given a host's transaction, migrate() and the store run inside it and roll back with it", async () => {
      const fresh = `${table}_t${suffix()}`;
      const key = await makeStoredKey();
      const rollback = new Error('rollback');
      const outcome = engine
        .db()
        .transaction()
        .execute(async (trx) => {
          await migrate(trx, { table: fresh });
          const inside = kyselyStore(trx, { table: fresh });
          expect(await inside.insert(key, { maxKeysPerOwner: 1 })).toEqual({ ok: true });
          expect(
            await inside.insert(await makeStoredKey({ ownerId: key.ownerId }), {
              maxKeysPerOwner: 1,
            }),
          ).toEqual({ ok: false, reason: 'limit_reached' });
          expect(await inside.findByLookup(key.lookup)).toEqual(key);
          throw rollback;
        });
      await expect(outcome).rejects.toBe(rollback);
      await expect(
        kyselyStore(engine.db(), { table: fresh }).findByLookup(key.lookup),
      ).rejects.toMatchObject({ cause: { code: '42P01' } });
    });

    it("ignores the host Kysely's plugins (CamelCasePlugin would rename the columns)", async () => {
      const camel = kyselyStore(engine.db().withPlugin(new CamelCasePlugin()), { table });
      const key = await makeStoredKey();
      await camel.insert(key, noCap);
      expect(await camel.findByLookup(key.lookup)).toEqual(key);
      expect(await camel.listByOwner(key.ownerId)).toEqual([key]);
    });

    it('a missing table is an error that propagates, not a null, and names the fix', async () => {
      const missing = kyselyStore(engine.db(), { table: `${table}_missing` });
      const key = await makeStoredKey();
      const failure = {
        name: 'StoreMisconfiguredError',
        code: 'store_misconfigured',
        message: expect.stringContaining(`run migrate(db, { table: "${table}_missing" }) first`),
        cause: { code: '42P01' },
      };
      await expect(missing.findByLookup(key.lookup)).rejects.toMatchObject(failure);
      await expect(missing.insert(key, noCap)).rejects.toMatchObject(failure);
      await expect(missing.listByOwner(key.ownerId)).rejects.toMatchObject(failure);
      await expect(missing.update(key.ownerId, key.id, { name: 'x' })).rejects.toMatchObject(
        failure,
      );
      await expect(missing.delete(key.ownerId, key.id)).rejects.toMatchObject(failure);
      await expect(
        missing.recordLastUsed([{ id: key.id, lastUsedAt: new Date() }]),
      ).rejects.toMatchObject(failure);
      await expect(missing.check?.()).rejects.toMatchObject(failure);
    });

    it('kyselyStore() and migrate() reject a table name that is not a plain identifier', async () => {
      expect(() => kyselyStore(engine.db(), { table: 'keys; drop table x' })).toThrow(TypeError);
      expect(() => kyselyStore(engine.db(), { table: 'Keys' })).toThrow(TypeError);
      expect(() => kyselyStore(engine.db(), { table: 'k'.repeat(46) })).toThrow(TypeError);
      await expect(migrate(engine.db(), { table: 'a.b' })).rejects.toThrow(TypeError);
    });
  });
}

export interface BusEngineOptions {
  db(): AnyKysely;
  /** A new listen connection; `roundTrip` completes a query on it, so any notification the
   * server had queued for it has arrived by then. */
  connect(): Promise<{
    connection: PgListenConnection | PgliteListenConnection;
    roundTrip(): Promise<void>;
  }>;
}

export function describePostgresBus(name: string, engine: BusEngineOptions): void {
  describe(`${name}: LISTEN/NOTIFY bus`, () => {
    const channel = `keyward_test_${suffix()}`;
    const errors: unknown[] = [];
    const onError = (error: unknown) => errors.push(error);
    const bus = async () => {
      const { connection, roundTrip } = await engine.connect();
      return { bus: postgresBus({ db: engine.db(), connection, channel, onError }), roundTrip };
    };
    const collect = () => {
      const events: InvalidationEvent[] = [];
      return { events, listener: (event: InvalidationEvent) => events.push(event) };
    };

    it('two subscribers on separate connections both receive a published event', async () => {
      const [a, b] = [await bus(), await bus()];
      const [got1, got2] = [collect(), collect()];
      const stops = [await a.bus.subscribe(got1.listener), await b.bus.subscribe(got2.listener)];
      await a.bus.publish({ type: 'revoked', keyId: 'key_one' });
      await vi.waitFor(() => {
        expect(got1.events).toMatchObject([{ type: 'revoked', keyId: 'key_one' }]);
        expect(got2.events).toMatchObject([{ type: 'revoked', keyId: 'key_one' }]);
      });
      for (const stop of stops) await stop();
      expect(errors).toEqual([]);
    });

    it('unsubscribe stops delivery to that subscriber; the others keep receiving', async () => {
      const [a, b] = [await bus(), await bus()];
      const [gone, kept, sameBus] = [collect(), collect(), collect()];
      const stopGone = await a.bus.subscribe(gone.listener);
      const stopKept = await b.bus.subscribe(kept.listener);
      const stopSameBus = await b.bus.subscribe(sameBus.listener);
      await b.bus.publish({ type: 'renamed', keyId: 'key_before' });
      await vi.waitFor(() => expect(gone.events).toHaveLength(1));
      await stopGone();
      await stopGone();
      await b.bus.publish({ type: 'revoked', keyId: 'key_after' });
      await vi.waitFor(() => expect(kept.events).toHaveLength(2));
      await a.roundTrip();
      expect(gone.events.map((e) => e.keyId)).toEqual(['key_before']);
      expect(sameBus.events.map((e) => e.keyId)).toEqual(['key_before', 'key_after']);
      // The last subscription of a bus ends its LISTEN; a new one starts it again.
      await stopKept();
      await stopSameBus();
      const again = collect();
      const stopAgain = await b.bus.subscribe(again.listener);
      await a.bus.publish({ type: 'revoked', keyId: 'key_again' });
      await vi.waitFor(() => expect(again.events.map((e) => e.keyId)).toEqual(['key_again']));
      await stopAgain();
      expect(sameBus.events).toHaveLength(2);
      expect(errors).toEqual([]);
    });

    it('a malformed payload and a throwing listener go to onError; other listeners still get the event', async () => {
      const a = await bus();
      const got = collect();
      const stops = [
        await a.bus.subscribe(() => {
          throw new Error('listener bug');
        }),
        await a.bus.subscribe(got.listener),
      ];
      await sql`select pg_notify(${channel}, '{"type":"deleted"}')`.execute(engine.db());
      await a.bus.publish({ type: 'revoked', keyId: 'key_ok' });
      await vi.waitFor(() => expect(got.events).toHaveLength(1));
      expect(errors).toHaveLength(2);
      expect(String(errors[0])).toMatch(/malformed event/);
      expect(String(errors[1])).toMatch(/listener bug/);
      errors.length = 0;
      for (const stop of stops) await stop();
    });

    it('publish() sends only the type and the key id', async () => {
      const a = await bus();
      const payloads: string[] = [];
      const stop = await a.bus.subscribe((event) => payloads.push(JSON.stringify(event)));
      const event = { type: 'revoked', keyId: 'key_x', rawKey: 'rep_secret' } as InvalidationEvent;
      await a.bus.publish(event);
      await vi.waitFor(() =>
        expect(payloads).toEqual([
          expect.stringMatching(/^\{"type":"revoked","keyId":"key_x","publishedAt":\d+\}$/),
        ]),
      );
      await stop();
    });

    it('postgresBus() rejects a channel that is not a lower-case identifier', async () => {
      const { connection } = await engine.connect();
      expect(() =>
        postgresBus({ db: engine.db(), connection, channel: 'Keyward', onError }),
      ).toThrow(TypeError);
    });
  });
}

/** The log bus (postgresLogBus) on an engine: appends, reads, trimming and a reader whose
 * position the log no longer holds. The fault tests with two key services are in
 * test/revocation-bound.test.ts. */
export function describePostgresLogBus(name: string, engine: BusEngineOptions): void {
  describe(`${name}: invalidation log bus`, () => {
    const channel = `keyward_log_${suffix()}`;
    const logTables: string[] = [];
    afterAll(async () => {
      for (const logTable of logTables) {
        await sql`drop table if exists ${sql.table(logTable)}`.execute(engine.db());
      }
    });
    /** A log table of this test's own, made by the keyward_0003 migration. */
    const freshLog = async () => {
      const logTable = `kwlog_${suffix()}`;
      logTables.push(logTable);
      const migrations = await keywardMigrationProvider({ logTable }).getMigrations();
      await migrations[`keyward_0003_invalidation_log_${DEFAULT_TABLE}`]?.up(engine.db());
      return logTable;
    };
    const collect = () => {
      const events: InvalidationEvent[] = [];
      return { events, listener: (event: InvalidationEvent) => events.push(event) };
    };

    it('delivers an appended event to every reader, with its publication time, and reports being current', async () => {
      const logTable = await freshLog();
      const errors: unknown[] = [];
      const onError = (error: unknown) => errors.push(error);
      const buses = await Promise.all(
        [1, 2].map(async () => {
          const { connection } = await engine.connect();
          return postgresLogBus({ db: engine.db(), connection, logTable, channel, onError });
        }),
      );
      const [a, b] = buses as [InvalidationBus, InvalidationBus];
      expect(b.vouchesForView).toBe(true);
      const got = collect();
      let caughtUp = 0;
      const stop = await b.subscribe(got.listener, { onCaughtUp: (asOf) => (caughtUp = asOf) });
      await vi.waitFor(() => expect(caughtUp).toBeGreaterThan(0));
      const before = performance.now();
      await a.publish({ type: 'revoked', keyId: 'key_one', ownerId: 'acct_1' });
      await vi.waitFor(() =>
        expect(got.events).toEqual([
          { type: 'revoked', keyId: 'key_one', ownerId: 'acct_1', publishedAt: expect.any(Number) },
        ]),
      );
      await vi.waitFor(() => expect(caughtUp).toBeGreaterThan(before));
      await stop();
      expect(errors).toEqual([]);
    });

    it('applies the early wake-up as it arrives, and its log entry read later not again', async () => {
      const logTable = await freshLog();
      const { connection } = await engine.connect();
      const bus = postgresLogBus({
        db: engine.db(),
        connection,
        logTable,
        channel,
        // No heartbeat during the test: only a notification wakes the reader.
        heartbeatMs: 60_000,
        onError: () => {},
      });
      const got = collect();
      let caughtUp = 0;
      const stop = await bus.subscribe(got.listener, { onCaughtUp: (asOf) => (caughtUp = asOf) });
      await vi.waitFor(() => expect(caughtUp).toBeGreaterThan(0));
      // The early half of an append alone: the event, ahead of any entry in the log.
      const payload = serializeInvalidationEvent({ type: 'revoked', keyId: 'key_early' });
      await sql`select pg_notify(${channel}, ${`- ${payload}`})`.execute(engine.db());
      await vi.waitFor(() => expect(got.events.map((event) => event.keyId)).toEqual(['key_early']));
      // Then its entry, between two appends (the second's NOTIFY wakes the reader).
      await bus.publish({ type: 'revoked', keyId: 'key_later' });
      await sql`
        insert into ${sql.table(logTable)} (payload) values (${payload})`.execute(engine.db());
      await bus.publish({ type: 'revoked', keyId: 'key_last' });
      const appended = performance.now();
      // One more append wakes a read sent after all of them were in the log.
      await bus.publish({ type: 'revoked', keyId: 'key_wake' });
      await vi.waitFor(() => expect(caughtUp).toBeGreaterThan(appended));
      expect(got.events.map((event) => event.keyId)).toEqual([
        'key_early',
        'key_later',
        'key_last',
        'key_wake',
      ]);
      await stop();
    });

    it('subscribe() names the fix when the log table is missing', async () => {
      const bus = postgresLogBus({
        db: engine.db(),
        logTable: `kwlog_missing_${suffix()}`,
        onError: () => {},
      });
      await expect(bus.subscribe(() => {})).rejects.toThrow(
        /table "kwlog_missing_\w+" does not exist; run migrate\(db\)/,
      );
    });

    it('applies a bare event a postgresBus publisher (the CLI) sends on the same channel', async () => {
      const logTable = await freshLog();
      const { connection } = await engine.connect();
      const bus = postgresLogBus({
        db: engine.db(),
        connection,
        logTable,
        channel,
        onError: () => {},
      });
      const got = collect();
      const stop = await bus.subscribe(got.listener);
      const publisher = postgresBus({
        db: engine.db(),
        channel,
        onError: () => {},
        connect: () => Promise.reject(new Error('publishes only')),
      });
      await publisher.publish({ type: 'revoked', keyId: 'key_cli' });
      await vi.waitFor(() => expect(got.events.map((event) => event.keyId)).toEqual(['key_cli']));
      await stop();
    });

    it('every 64th append trims the log to maxEntries, keeping the newest', async () => {
      const logTable = await freshLog();
      const bus = postgresLogBus({ db: engine.db(), logTable, maxEntries: 2, onError: () => {} });
      const kept = async () => {
        const { rows } = await sql<{ payload: string }>`
          select payload from ${sql.table(logTable)} order by seq`.execute(engine.db());
        return rows.map((row) => Number(JSON.parse(row.payload).keyId.slice('key_'.length)));
      };
      const publish = async (from: number, to: number) => {
        for (let n = from; n <= to; n++) await bus.publish({ type: 'revoked', keyId: `key_${n}` });
      };
      await publish(1, 63);
      expect(await kept()).toHaveLength(63);
      await publish(64, 64);
      expect(await kept()).toEqual([63, 64]);
      await publish(65, 130);
      expect(await kept()).toEqual([127, 128, 129, 130]);
    });

    it('a trim deletes entries older than maxAgeMs, but never the newest', async () => {
      const logTable = await freshLog();
      const table = sql.table(logTable);
      const bus = postgresLogBus({
        db: engine.db(),
        logTable,
        maxAgeMs: 60_000,
        onError: () => {},
      });
      for (let n = 1; n <= 63; n++) await bus.publish({ type: 'revoked', keyId: `key_${n}` });
      await sql`update ${table} set created_at = now() - interval '2 minutes' where seq <= 60`.execute(
        engine.db(),
      );
      await bus.publish({ type: 'revoked', keyId: 'key_64' });
      const { rows } = await sql<{ seq: string }>`
        select seq::text as seq from ${table} order by seq`.execute(engine.db());
      expect(rows.map((row) => Number(row.seq))).toEqual([61, 62, 63, 64]);
    });

    it('a reader whose position the log no longer holds resyncs, says so, and reads what remains', async () => {
      const logTable = await freshLog();
      const table = sql.table(logTable);
      const { connection } = await engine.connect();
      const errors: unknown[] = [];
      // No heartbeat during the test: only the notification wakes the reader.
      const bus = postgresLogBus({
        db: engine.db(),
        connection,
        logTable,
        channel,
        heartbeatMs: 60_000,
        onError: (error) => errors.push(error),
      });
      const got = collect();
      let resyncs = 0;
      let caughtUp = 0;
      const stop = await bus.subscribe(got.listener, {
        onResync: () => resyncs++,
        onCaughtUp: () => caughtUp++,
      });
      await vi.waitFor(() => expect(caughtUp).toBe(1));
      // Three appends and a trim of the first two, seen by the reader only together.
      await engine
        .db()
        .transaction()
        .execute(async (trx) => {
          for (const keyId of ['key_1', 'key_2', 'key_3']) {
            const payload = JSON.stringify({ type: 'revoked', keyId });
            await sql`insert into ${table} (payload) values (${payload})`.execute(trx);
          }
          await sql`delete from ${table} where seq < (select max(seq) from ${table})`.execute(trx);
          await sql`select pg_notify(${channel}, 'wake')`.execute(trx);
        });
      await vi.waitFor(() => expect(resyncs).toBe(1));
      expect(got.events.map((event) => event.keyId)).toEqual(['key_3']);
      expect(errors.map(String)).toEqual([
        expect.stringMatching(/no longer holds every event after this instance's position/),
      ]);
      await stop();
    });
  });
}
