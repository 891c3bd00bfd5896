/**
 * The stores under test, as the parent sets them up: Postgres gets a table of its own and
 * Redis a namespace of its own, seeded once and shared by both frameworks' servers (each
 * server process still sees every key first), then dropped.
 */
import { randomBytes } from 'node:crypto';
import type { StoredKey } from '@keyward/core';
import { kyselyStore, migrate } from '@keyward/kysely';
import { redisStore } from '@keyward/redis';
import { serviceUnavailable } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { ServerConfig, StoreKind } from './protocol.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
// The cap is an int4 in SQL.
const NO_CAP = { maxKeysPerOwner: 1_000_000 };

export interface StoreSetup {
  /** What the server child needs to open the same store. */
  config: Partial<ServerConfig>;
  /** The memory store lives inside the server: it is seeded there. */
  seedInChild: boolean;
  close(): Promise<void>;
}

/** The store, seeded with `records`; `null` (after a loud notice) when its server is
 * unreachable, or an error under KEYWARD_REQUIRE_SERVICES=1. */
export async function setUpStore(
  kind: StoreKind,
  records: StoredKey[],
): Promise<StoreSetup | null> {
  switch (kind) {
    case 'memory':
      return { config: {}, seedInChild: true, close: async () => {} };
    case 'postgres':
      return setUpPostgres(records);
    case 'redis':
      return setUpRedis(records);
  }
}

async function setUpPostgres(records: StoredKey[]): Promise<StoreSetup | null> {
  const table = `keyward_bench_${randomBytes(4).toString('hex')}`;
  const pool = new pg.Pool({
    connectionString: DATABASE_URL,
    max: 4,
    connectionTimeoutMillis: 2000,
  });
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrate(db, { table });
  } catch (error) {
    await db.destroy();
    serviceUnavailable(`Postgres (${DATABASE_URL})`, error, 'rows');
    return null;
  }
  const close = async () => {
    await sql`drop table if exists ${sql.table(table)}`.execute(db);
    await db.destroy();
  };
  try {
    const store = kyselyStore(db, { table });
    for (const record of records) await store.insert(record, NO_CAP);
  } catch (error) {
    await close();
    throw error;
  }
  return { config: { databaseUrl: DATABASE_URL, table }, seedInChild: false, close };
}

async function setUpRedis(records: StoredKey[]): Promise<StoreSetup | null> {
  const namespace = `kwbench-${randomBytes(4).toString('hex')}`;
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    serviceUnavailable(`Redis (${REDIS_URL})`, error, 'rows');
    return null;
  }
  const close = async () => {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 1000);
      if (keys.length > 0) await client.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    await client.quit();
  };
  try {
    const store = redisStore(client, { namespace });
    for (const record of records) await store.insert(record, NO_CAP);
  } catch (error) {
    await close();
    throw error;
  }
  return { config: { redisUrl: REDIS_URL, namespace }, seedInChild: false, close };
}
