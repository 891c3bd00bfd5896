import { mkdir } from 'node:fs/promises';
import { lockPgliteFolder, redactUrl } from '@keyward/cli';
import { type InvalidationBus, type KeyStore, memoryStore } from '@keyward/core';
import type { ExampleConfig } from './config.js';

export interface OpenedStore {
  store: KeyStore;
  bus?: InvalidationBus;
  /** What the welcome text says the store is. */
  label: string;
  close(): Promise<void>;
}

/** Opens the store `KEYWARD_STORE` names. Each kind's client is imported only when chosen,
 * so the memory store needs no database driver at all. */
export async function openStore(
  config: ExampleConfig,
  onError: (error: unknown) => void,
): Promise<OpenedStore> {
  switch (config.store) {
    case 'memory':
      return { store: memoryStore(), label: 'memory (keys vanish on exit)', close: async () => {} };
    case 'pglite':
      return openPglite(config, onError);
    case 'postgres':
      return openPostgres(config, onError);
    case 'redis':
      return openRedis(config, onError);
  }
}

async function openPglite(
  config: ExampleConfig,
  onError: (e: unknown) => void,
): Promise<OpenedStore> {
  const [{ PGlite }, { Kysely }, { PGliteDialect }, { kyselyStore, migrate, postgresBus }] =
    await Promise.all([
      import('@electric-sql/pglite'),
      import('kysely'),
      import('kysely-pglite-dialect'),
      import('@keyward/kysely'),
    ]);
  await mkdir(config.dataDir, { recursive: true });
  // PGlite keeps no lock of its own: the mark keeps the keyward CLI off the folder while the
  // example runs (its writes would be lost), and this example off it while the CLI runs.
  const unlock = await lockPgliteFolder(config.dataDir, 'a keyward example');
  const pglite = await PGlite.create(config.dataDir).catch(async (error: unknown) => {
    await unlock();
    throw error;
  });
  const db = new Kysely({ dialect: new PGliteDialect(pglite) });
  await migrate(db);
  return {
    store: kyselyStore(db),
    bus: postgresBus({ db, connection: pglite, onError }),
    label: `PGlite, embedded, persisted in ${config.dataDir}`,
    close: async () => {
      await db.destroy();
      if (!pglite.closed) await pglite.close();
      await unlock();
    },
  };
}

async function openPostgres(
  config: ExampleConfig,
  onError: (e: unknown) => void,
): Promise<OpenedStore> {
  const [
    { default: pg },
    { Kysely, PostgresDialect },
    { kyselyStore, migrate, postgresBus, postgresLogBus },
  ] = await Promise.all([import('pg'), import('kysely'), import('@keyward/kysely')]);
  // Without a connect timeout, a connect to an unreachable server waits for the kernel's
  // TCP timeout (minutes) and the requests queued behind it wait just as long.
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: 10,
    connectionTimeoutMillis: 3000,
  });
  pool.on('error', onError);
  // pg emits 'error' on a client whose connection drops. The pool listens only on idle
  // clients and Kysely adds no listener to those it has checked out, so a database restart
  // in the middle of a query would end the process with an uncaught exception. The query
  // itself fails too, and the key service reports that, so this listener only has to exist.
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  await migrate(db);
  // LISTEN needs a connection of its own, outside the pool. The bus opens it, and opens
  // another when it drops (then the service empties its cache: events were missed); it
  // ends it when the service closes.
  const makeBus = config.bus === 'log' ? postgresLogBus : postgresBus;
  const bus = makeBus({
    db,
    onError,
    connect: async () => {
      const listener = new pg.Client({
        connectionString: config.databaseUrl,
        connectionTimeoutMillis: 3000,
      });
      await listener.connect();
      return listener;
    },
  });
  return {
    store: kyselyStore(db),
    bus,
    label: `Postgres at ${redactUrl(config.databaseUrl)}${config.bus === 'log' ? ', invalidation log' : ''}`,
    close: async () => {
      await db.destroy();
    },
  };
}

async function openRedis(
  config: ExampleConfig,
  onError: (e: unknown) => void,
): Promise<OpenedStore> {
  const [{ Redis }, { redisStore, redisBus, redisStreamBus }] = await Promise.all([
    import('ioredis'),
    import('@keyward/redis'),
  ]);
  const client = new Redis(config.redisUrl, {
    maxRetriesPerRequest: 2,
    // ioredis backs off up to 5 s between reconnects by default, which is how long a
    // service could stay down after Redis is back; a short cap brings it back at once.
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
  });
  // Same options: it reconnects with the same short backoff and never gives up, and the
  // bus subscribes again each time (then the service empties its cache).
  const subscriber = client.duplicate();
  await client.ping();
  return {
    store: redisStore(client),
    bus: (config.bus === 'log' ? redisStreamBus : redisBus)({
      publisher: client,
      subscriber,
      onError,
    }),
    label: `Redis at ${redactUrl(config.redisUrl)}${config.bus === 'log' ? ', invalidation log' : ''}`,
    close: async () => {
      subscriber.disconnect();
      await client.quit();
    },
  };
}
