import { randomBytes } from 'node:crypto';
import {
  createKeyService,
  type HttpOptions,
  type KeyService,
  type KeyServiceOptions,
} from '@keyward/core';
import { kyselyStore, migrate, postgresBus } from '@keyward/kysely';
import { CHEAP_ARGON2, type RunningServer } from '@keyward/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { startServer } from './servers.js';
import { DATABASE_URL } from './services.js';

export interface Instance {
  service: KeyService;
  server: RunningServer;
}

/**
 * Instances of a host app (Express, on loopback) that share one Postgres store table and
 * its LISTEN/NOTIFY bus, each with a pool and a bus connection of its own, caches warm
 * for a minute: the bus, not the TTL, keeps them in step. For the tests of what crosses
 * instances. `setUp()` makes the table; `tearDown()` closes everything and drops it.
 */
export function postgresInstances(prefix: string, guardedPath: string) {
  const table = `${prefix}_${randomBytes(4).toString('hex')}`;
  const channel = `${table}_bus`;
  const pools: pg.Pool[] = [];
  const clients: pg.Client[] = [];
  const instances: Instance[] = [];
  let admin: Kysely<unknown> | undefined;

  return {
    table,
    async setUp(): Promise<void> {
      admin = new Kysely<unknown>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: DATABASE_URL }) }),
      });
      await migrate(admin, { table });
    },

    async start(
      options: {
        service?: Partial<Omit<KeyServiceOptions, 'store' | 'bus'>>;
        httpOptions?: Omit<HttpOptions, 'authorize'>;
      } = {},
    ): Promise<Instance> {
      const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
      pools.push(pool);
      const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
      const service = createKeyService({
        argon2: CHEAP_ARGON2,
        cache: { ttlMs: 60_000 },
        ...options.service,
        store: kyselyStore(db, { table }),
        bus: postgresBus({
          db,
          channel,
          onError: () => {},
          connect: async () => {
            const client = new pg.Client({ connectionString: DATABASE_URL });
            clients.push(client);
            await client.connect();
            return client;
          },
        }),
      });
      await service.ready();
      const server = await startServer.express({
        service,
        guardedPath,
        ...(options.httpOptions && { httpOptions: options.httpOptions }),
      });
      const instance = { service, server };
      instances.push(instance);
      return instance;
    },

    async tearDown(): Promise<void> {
      for (const instance of instances) {
        await instance.server.close();
        await instance.service.close().catch(() => {});
      }
      if (admin) {
        await sql`drop table if exists ${sql.table(table)}`.execute(admin).catch(() => {});
        await admin.destroy();
      }
      await Promise.all(pools.map((pool) => pool.end().catch(() => {})));
      await Promise.all(clients.map((client) => client.end().catch(() => {})));
    },
  };
}
