// The store conformance suite of the installed @keyward/testing, against the installed
// stores: memory, Kysely on PGlite, Kysely on the Postgres server, Redis standalone.
// Run by scripts/consumer-test.mjs in a scratch app outside the workspace.
import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { memoryStore } from '@keyward/core';
import { kyselyStore, migrate } from '@keyward/kysely';
import { redisStore } from '@keyward/redis';
import { describeStoreConformance } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const suffix = randomBytes(6).toString('hex');

const memory = memoryStore();
describeStoreConformance('memory (installed)', {
  createStore: () => memory,
  dumpContents: async () => JSON.stringify(memory.snapshot()),
});

// biome-ignore lint/suspicious/noExplicitAny: keyward's stores take any Kysely
type AnyKysely = Kysely<any>;

/** Every row of the table, as JSON text, for the suite's secret-hygiene check. */
async function dumpTable(db: AnyKysely, table: string): Promise<string> {
  const { rows } = await sql<{ dump: string }>`
    select coalesce(json_agg(k), '[]')::text as dump from ${sql.table(table)} k`.execute(db);
  return rows[0]?.dump ?? '';
}

let pglite: PGlite | undefined;
let pgliteDb: AnyKysely | undefined;
describeStoreConformance('kysely on PGlite (installed)', {
  async createStore() {
    pglite = await PGlite.create();
    pgliteDb = new Kysely({ dialect: new PGliteDialect(pglite) });
    await migrate(pgliteDb);
    return kyselyStore(pgliteDb);
  },
  dumpContents: async () => dumpTable(pgliteDb as AnyKysely, 'keyward_api_keys'),
  async teardown() {
    await pgliteDb?.destroy();
    await pglite?.close().catch(() => undefined);
  },
});

const table = `keyward_consumer_${suffix}`;
const servers: AnyKysely[] = [];
const postgres = () => {
  const db: AnyKysely = new Kysely({
    dialect: new PostgresDialect({
      pool: new pg.Pool({ connectionString: DATABASE_URL, max: 10, connectionTimeoutMillis: 3000 }),
    }),
  });
  servers.push(db);
  return db;
};
describeStoreConformance('kysely on the Postgres server (installed)', {
  async createStore() {
    const db = postgres();
    await migrate(db, { table });
    return kyselyStore(db, { table });
  },
  // Separate pools, so the concurrent cap test races real connections.
  createPeers: async (count) =>
    Array.from({ length: count }, () => kyselyStore(postgres(), { table })),
  dumpContents: async () => dumpTable(servers[0] as AnyKysely, table),
  async teardown() {
    await servers[0]?.schema.dropTable(table).ifExists().execute();
    await Promise.all(servers.map((db) => db.destroy()));
  },
});

const namespace = `kwconsumer-${suffix}`;
const redisClients: Redis[] = [];
const redis = () => {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, connectTimeout: 3000 });
  redisClients.push(client);
  return client;
};
async function namespaceKeys(client: Redis): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 500);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found.sort();
}
describeStoreConformance('redis standalone (installed)', {
  createStore: () => redisStore(redis(), { namespace }),
  createPeers: async (count) =>
    Array.from({ length: count }, () => redisStore(redis(), { namespace })),
  async dumpContents() {
    const client = redisClients[0] as Redis;
    const lines: string[] = [];
    for (const key of await namespaceKeys(client)) {
      const type = await client.type(key);
      let value: unknown;
      if (type === 'string') value = await client.get(key);
      else if (type === 'hash') value = await client.hgetall(key);
      else if (type === 'zset') value = await client.zrange(key, '0', '-1', 'WITHSCORES');
      else value = (await client.dumpBuffer(key))?.toString('hex');
      lines.push(`${key} ${type} ${JSON.stringify(value)}`);
    }
    return lines.join('\n');
  },
  async teardown() {
    const client = redisClients[0];
    if (client) await Promise.all((await namespaceKeys(client)).map((key) => client.del(key)));
    await Promise.all(redisClients.map((client) => client.quit()));
  },
});
