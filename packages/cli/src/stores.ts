import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { InvalidationBus, KeyStore } from '@keyward/core';
import { redactUrl, type StoreConfig } from './config.js';
import { storeError } from './errors.js';
import { lockPgliteFolder, PgliteFolderInUseError } from './pglite-lock.js';

/**
 * A store opened for one command. A small copy of what the examples do (their
 * examples/shared/src/stores.ts), tuned for a process that runs one command and exits: a
 * store that does not answer fails within seconds instead of being retried, nothing listens
 * on the invalidation bus, and nothing is migrated unless `keyward migrate` asks.
 */
export interface OpenedStore {
  store: KeyStore;
  /** Publishes revocations and rolls to the apps sharing the store; never subscribes. */
  bus?: InvalidationBus;
  /** Creates or upgrades what the store needs; idempotent. Says what it did. */
  migrate(): Promise<string>;
  close(): Promise<void>;
}

/** How long a connection attempt may take before the store counts as down. */
const CONNECT_TIMEOUT_MS = 3000;
/** How long one Redis command may take, past the connection. */
const COMMAND_TIMEOUT_MS = 10_000;

/** Opens the store the settings name, or throws a `CliError` (exit 3) that names the fix.
 * Each kind's driver is imported only when chosen. */
export async function openStore(
  config: StoreConfig,
  purpose: 'migrate' | 'use',
  onError: (error: unknown) => void,
): Promise<OpenedStore> {
  switch (config.store) {
    case 'pglite':
      return openPglite(config, purpose);
    case 'postgres':
      return openPostgres(config, onError);
    case 'redis':
      return openRedis(config, onError);
  }
}

async function openPglite(config: StoreConfig, purpose: 'migrate' | 'use'): Promise<OpenedStore> {
  // PGlite would create an empty database anywhere it is pointed: a typo in the folder
  // would then read as "no keys" instead of an error.
  if (purpose === 'use' && !existsSync(config.dataDir)) {
    throw storeError(
      `no PGlite database in ${config.dataDir}: set KEYWARD_DATA_DIR (or --data-dir) to your app's folder, or run \`keyward migrate\` to create one there.`,
    );
  }
  const [{ PGlite }, { Kysely }, { PGliteDialect }, { kyselyStore, migrate }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('kysely'),
    import('kysely-pglite-dialect'),
    import('@keyward/kysely'),
  ]);
  await mkdir(config.dataDir, { recursive: true });
  let unlock: () => Promise<void>;
  try {
    unlock = await lockPgliteFolder(config.dataDir, 'the keyward CLI');
  } catch (error) {
    if (error instanceof PgliteFolderInUseError) throw storeError(error.message);
    throw error;
  }
  let pglite: InstanceType<typeof PGlite>;
  try {
    pglite = await PGlite.create(config.dataDir);
  } catch (error) {
    await unlock();
    throw storeError(
      `PGlite could not open ${config.dataDir} (${reason(error)}): stop the app using it (PGlite serves one process at a time), or set KEYWARD_DATA_DIR (or --data-dir).`,
    );
  }
  const db = new Kysely({ dialect: new PGliteDialect(pglite) });
  // No bus: PGlite serves one process, so no other instance could be listening.
  return {
    store: kyselyStore(db),
    migrate: async () => {
      await migrate(db);
      return `the keyward table in ${config.dataDir} is up to date`;
    },
    close: async () => {
      await db.destroy();
      if (!pglite.closed) await pglite.close();
      await unlock();
    },
  };
}

async function openPostgres(
  config: StoreConfig,
  onError: (error: unknown) => void,
): Promise<OpenedStore> {
  const [
    { default: pg },
    { Kysely, PostgresDialect, sql },
    { kyselyStore, migrate, postgresBus, postgresLogBus },
  ] = await Promise.all([import('pg'), import('kysely'), import('@keyward/kysely')]);
  const where = `Postgres at ${redactUrl(config.databaseUrl)}`;
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: 2,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  // A dropped connection is reported by the query it breaks; these listeners only keep it
  // from ending the process as an uncaught 'error' event.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  try {
    await withinDeadline(sql`select 1`.execute(db));
  } catch (error) {
    await db.destroy().catch(() => {});
    throw storeError(
      `cannot reach ${where} (${reason(error)}): start it, or set DATABASE_URL (or --database-url).`,
    );
  }
  const bus = postgresBus({
    db,
    onError,
    // Never called: the CLI only publishes (pg_notify through the pool).
    connect: () => Promise.reject(new Error('the keyward CLI does not listen')),
  });
  // Apps on the log bus replay from the log (the table migrate() makes), not the channel.
  const log = postgresLogBus({ db, onError });
  return {
    store: kyselyStore(db),
    bus: publishToBoth(bus, log, `the invalidation log on ${where}`, onError),
    migrate: async () => {
      await migrate(db);
      return `the keyward table on ${where} is up to date`;
    },
    close: () => db.destroy(),
  };
}

async function openRedis(
  config: StoreConfig,
  onError: (error: unknown) => void,
): Promise<OpenedStore> {
  const [{ Redis }, { redisStore, redisBus, redisStreamBus, migrateRedisStore }] =
    await Promise.all([import('ioredis'), import('@keyward/redis')]);
  const where = `Redis at ${redactUrl(config.redisUrl)}`;
  const client = new Redis(config.redisUrl, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // A server that accepts the connection and never answers would hold a command (and the
    // process) forever; the key service has a deadline of its own, `migrate` does not.
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    // A couple of quick retries for a blip, then commands fail instead of queueing.
    retryStrategy: (attempt) => (attempt > 2 ? null : attempt * 100),
  });
  // ioredis prints unhandled 'error' events itself; the failing command reports them here.
  client.on('error', () => {});
  try {
    // connectTimeout ends at the TCP handshake; this covers a server that stays silent.
    await withinDeadline(
      (async () => {
        await client.connect();
        await client.ping();
      })(),
    );
  } catch (error) {
    client.disconnect();
    throw storeError(
      `cannot reach ${where} (${reason(error)}): start it, or set REDIS_URL (or --redis-url).`,
    );
  }
  // Never connected: the CLI only publishes.
  const subscriber = client.duplicate({ lazyConnect: true });
  return {
    store: redisStore(client),
    bus: publishToBoth(
      redisBus({ publisher: client, subscriber, onError }),
      redisStreamBus({ publisher: client, subscriber, onError }),
      `the invalidation stream on ${where}`,
      onError,
    ),
    migrate: async () => {
      const moved = await migrateRedisStore(client);
      return `the keyward keys on ${where} are in the current layout (${moved.records} records moved)`;
    },
    close: async () => {
      subscriber.disconnect();
      await client.quit().catch(() => client.disconnect());
    },
  };
}

/** Rejects when `work` takes longer than a store may take to answer its first call. */
async function withinDeadline<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS / 1000} s`)),
      CONNECT_TIMEOUT_MS + 500,
    );
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A bus that publishes and never listens (a command changes keys but caches none), on both
 * kinds an app may listen on: the pub/sub channel, and the replayable log that the apps
 * with a stated revocation bound read. The CLI cannot tell which one the apps use, so it
 * writes to both, under their default names; an app applies an event twice at no cost.
 * The log write failing (a store whose log was never migrated) is reported, not fatal:
 * the channel still carried the event.
 */
function publishToBoth(
  channel: InvalidationBus,
  log: InvalidationBus,
  logName: string,
  onError: (error: unknown) => void,
): InvalidationBus {
  return {
    async publish(event) {
      const [sent, logged] = await Promise.allSettled([channel.publish(event), log.publish(event)]);
      if (sent.status === 'rejected') throw sent.reason;
      if (logged.status === 'rejected') {
        onError(
          new Error(
            `could not append to ${logName} (${reason(logged.reason)}); apps on a log bus drop the key only at their cache TTL. Run keyward migrate.`,
          ),
        );
      }
    },
    subscribe: async () => async () => {},
  };
}

function reason(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (message) return message;
  return typeof code === 'string' ? code : 'no message';
}
