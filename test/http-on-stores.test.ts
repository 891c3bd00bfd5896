/**
 * The HTTP contract suite on every built-in store behind a real adapter (the adapters'
 * own test files run it on the memory store): the contract must not depend on the store.
 */
import { randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { kyselyStore, migrate } from '@keyward/kysely';
import { redisStore } from '@keyward/redis';
import { describeHttpContract } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import { describe } from 'vitest';
import { redisEntries } from './support/redis-dump.js';
import { startServer } from './support/servers.js';
import { DATABASE_URL, postgresReachable, REDIS_URL, redisReachable } from './support/services.js';

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);

describeHttpContract('express on PGlite', {
  startServer: startServer.express,
  async createStore() {
    const pglite = await PGlite.create();
    const db = new Kysely({ dialect: new PGliteDialect(pglite) });
    await migrate(db);
    return {
      store: kyselyStore(db),
      dump: async () =>
        JSON.stringify((await sql`select * from keyward_api_keys`.execute(db)).rows),
      close: () => db.destroy(),
    };
  },
});

describe.skipIf(!postgres)('on the Postgres server', () => {
  describeHttpContract('fastify on Postgres', {
    startServer: startServer.fastify,
    async createStore() {
      const table = `keyward_http_${randomUUID().slice(0, 8)}`;
      const db = new Kysely({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: DATABASE_URL }) }),
      });
      await migrate(db, { table });
      return {
        store: kyselyStore(db, { table }),
        dump: async () =>
          JSON.stringify((await sql`select * from ${sql.table(table)}`.execute(db)).rows),
        close: async () => {
          await sql`drop table if exists ${sql.table(table)}`.execute(db);
          await db.destroy();
        },
      };
    },
  });
});

describe.skipIf(!redis)('on the Redis server', () => {
  describeHttpContract('express on Redis', {
    startServer: startServer.express,
    async createStore() {
      const namespace = `kwhttp-${randomUUID().slice(0, 8)}`;
      const client = new Redis(REDIS_URL);
      const keys = async () => client.keys(`${namespace}:*`);
      return {
        store: redisStore(client, { namespace }),
        dump: async () =>
          (await redisEntries(client, `${namespace}:*`)).map((e) => e.join(' ')).join('\n'),
        close: async () => {
          const left = await keys();
          if (left.length > 0) await client.del(...left);
          await client.quit();
        },
      };
    },
  });
});
