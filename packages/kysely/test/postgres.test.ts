import { randomBytes } from 'node:crypto';
import { createKeyService, type KeyStore, StoreUnavailableError } from '@keyward/core';
import { describeCap, makeStoredKey } from '@keyward/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DATABASE_URL, postgresReachable } from '../../../test/support/services.js';
import { kyselyStore } from '../src/kysely-store.js';
import { migrate } from '../src/migrations.js';
import { postgresBus } from '../src/postgres-bus.js';
import type { AnyKysely } from '../src/table.js';
import {
  describeKyselyStore,
  describePostgresBus,
  describePostgresLogBus,
  queryLog,
} from './engine-suites.js';
import { describeReadiness } from './readiness-suite.js';

const available = await postgresReachable();
// A table and channel of its own per run, so concurrent runs on the shared server never meet.
const table = `keyward_test_${randomBytes(6).toString('hex')}`;
const log = queryLog();
const kyselys: AnyKysely[] = [];
const clients: pg.Client[] = [];

function newKysely(config: pg.PoolConfig = {}): AnyKysely {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10, ...config });
  const db = new Kysely({ dialect: new PostgresDialect({ pool }), log: log.record });
  kyselys.push(db);
  return db;
}

async function newClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: DATABASE_URL });
  clients.push(client);
  await client.connect();
  return client;
}

describe.skipIf(!available)('Postgres server', () => {
  let db: AnyKysely;
  beforeAll(async () => {
    // A session time zone far from UTC: round trips must not depend on it.
    db = newKysely({ options: '-c TimeZone=Pacific/Chatham' });
    await migrate(db, { table });
  });
  afterAll(async () => {
    await db?.schema.dropTable(table).ifExists().execute();
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
    await Promise.all(kyselys.map((k) => k.destroy()));
  });

  // Each peer has its own pool, so concurrent inserts really race on separate connections.
  const createPeers = async (count: number): Promise<KeyStore[]> =>
    Array.from({ length: count }, () => kyselyStore(newKysely({ max: 4 }), { table }));

  describeKyselyStore('Postgres', { db: () => db, table, log, createPeers });
  describeReadiness('Postgres', { db: () => db, table });

  it('ready() on a Postgres that is down rejects as an outage, not as a missing table', async () => {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    const down = newKysely({ connectionString: 'postgres://postgres@127.0.0.1:1/test' });
    const service = createKeyService({ store: kyselyStore(down, { table }) });
    const failure = service.ready();
    await expect(failure).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(failure).rejects.toMatchObject({ code: 'store_unavailable' });
    await expect(failure).rejects.toThrow(
      /did not answer its readiness check .*ECONNREFUSED.*down or unreachable/,
    );
    await expect(failure).rejects.not.toThrow(/migrate/);
    await service.close();
  });
  describePostgresBus('Postgres', {
    db: () => db,
    connect: async () => {
      const client = await newClient();
      return {
        connection: client,
        roundTrip: async () => {
          await client.query('select 1');
        },
      };
    },
  });
  describePostgresLogBus('Postgres', {
    db: () => db,
    connect: async () => {
      const client = await newClient();
      return {
        connection: client,
        roundTrip: async () => {
          await client.query('select 1');
        },
      };
    },
  });

  describe('under a database default of REPEATABLE READ', () => {
    // The store must not inherit it: the count would read a snapshot older than the lock.
    const repeatableRead = async (count: number): Promise<KeyStore[]> =>
      Array.from({ length: count }, () =>
        kyselyStore(
          newKysely({ max: 4, options: '-c default_transaction_isolation=repeatable\\ read' }),
          { table },
        ),
      );
    let store: KeyStore;
    beforeAll(async () => {
      [store] = (await repeatableRead(1)) as [KeyStore];
    });
    describeCap(
      {
        get store() {
          return store;
        },
      },
      { createPeers: repeatableRead },
    );
  });

  it('deleteTree() waits for a key being created by one in the tree, and deletes it too', async () => {
    const store = kyselyStore(db, { table });
    const root = await makeStoredKey();
    await store.insert(root, { maxKeysPerOwner: 100 });
    const child = await makeStoredKey({ ownerId: root.ownerId, createdBy: root.id });
    // A create in flight on another connection: inserted, not yet committed.
    let commit = () => {};
    const committing = new Promise<void>((resolve) => {
      commit = resolve;
    });
    let inserted = () => {};
    const insertedYet = new Promise<void>((resolve) => {
      inserted = resolve;
    });
    const creating = db.transaction().execute(async (trx) => {
      await kyselyStore(trx, { table }).insert(child, { maxKeysPerOwner: 100 });
      inserted();
      await committing;
    });
    await insertedYet;
    const cascade = store.deleteTree(root.ownerId, root.id);
    // Without the owner's lock the cascade would finish here, its snapshot blind to the child.
    const early = await Promise.race([
      cascade.then(() => 'finished'),
      new Promise((resolve) => setTimeout(resolve, 500, 'waiting')),
    ]);
    commit();
    await creating;
    expect(early).toBe('waiting');
    expect(await cascade).toEqual([root.id, child.id]);
    expect(await store.findByLookup(child.lookup)).toBeNull();
  });

  it('with connect, a terminated LISTEN connection is replaced, onResync is called and events flow again', async () => {
    const opened: pg.Client[] = [];
    const errors: unknown[] = [];
    const channel = `keyward_test_${randomBytes(6).toString('hex')}`;
    const bus = postgresBus({
      db,
      channel,
      onError: (e) => errors.push(e),
      connect: async () => {
        const client = await newClient();
        opened.push(client);
        return client;
      },
    });
    const events: string[] = [];
    let resyncs = 0;
    const stop = await bus.subscribe((event) => events.push(event.keyId), {
      onResync: () => resyncs++,
    });
    expect(opened).toHaveLength(1);
    const { rows } = await (opened[0] as pg.Client).query<{ pid: number }>(
      'select pg_backend_pid() as pid',
    );
    await sql`select pg_terminate_backend(${rows[0]?.pid}::int)`.execute(db);
    await vi.waitFor(() => expect(resyncs).toBe(1));
    expect(opened).toHaveLength(2);
    expect(errors[0]).toMatchObject({ code: '57P01' });
    await bus.publish({ type: 'revoked', keyId: 'key_after' });
    await vi.waitFor(() => expect(events).toEqual(['key_after']));
    // The last subscription ends the bus's own client.
    const ended = new Promise((resolve) => opened[1]?.once('end', resolve));
    await stop();
    await ended;
  });

  it('a dropped listen connection reports to onError, and never crashes the process', async () => {
    const client = await newClient();
    const errors: unknown[] = [];
    const bus = postgresBus({ db, connection: client, onError: (e) => errors.push(e) });
    const stop = await bus.subscribe(() => undefined);
    const ended = new Promise((resolve) => client.once('end', resolve));
    const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
    await sql`select pg_terminate_backend(${rows[0]?.pid}::int)`.execute(db);
    await ended;
    expect(errors[0]).toMatchObject({ code: '57P01' });
    // The subscription is dead; ending it says so rather than pretending.
    await expect(stop()).rejects.toThrow();
  });
});
