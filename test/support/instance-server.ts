/**
 * One instance of a host app, as a process of its own: an Express or Fastify app around its
 * own KeyService, on a shared Redis or Postgres store, with or without the invalidation bus.
 * test/multi-instance.test.ts starts several of these (see instance-process.ts), so that
 * nothing but the store and the bus connects them: no shared memory, no shared event loop.
 *
 * Configured by one JSON environment variable, `KEYWARD_INSTANCE` (an `InstanceConfig`).
 * Prints `listening on <url>` once the bus (if any) is subscribed; answers questions on the IPC
 * channel (`InstanceQuestion`); exits on SIGTERM or when its stdin closes, so it never
 * outlives the test that started it.
 */
import {
  createKeyService,
  type InvalidationBus,
  type KeyService,
  type KeyStore,
} from '@keyward/core';
import { startServer } from './servers.js';

export interface InstanceConfig {
  framework: 'express' | 'fastify';
  store: 'redis' | 'postgres';
  /** Redis or Postgres URL. */
  url: string;
  /** Redis namespace, or Postgres table. */
  namespace: string;
  /** The bus channel; no bus at all when absent. */
  channel?: string;
  /** The positive cache's TTL. */
  cacheTtlMs?: number;
  /** The route guarded by `requireApiKey` / `{ config: { apiKey: true } }`. */
  guardedPath: string;
}

/** What the test may ask over IPC, sent with an `id`; the answer comes back as
 * `{ id, answer }`. */
export type InstanceQuestion = { type: 'stats' } | { type: 'busArrival'; keyId: string };

/** The answer to `stats`: the service's own, and how often it read the store by lookup. */
export type InstanceStats = ReturnType<KeyService['stats']> & { storeReads: number };

interface Backend {
  store: KeyStore;
  bus?: InvalidationBus;
  close(): Promise<void>;
}

// Errors go to stderr, where the test collects them; by design they never hold a raw key.
const onError = (error: unknown) => {
  process.stderr.write(`instance error: ${error instanceof Error ? error.stack : error}\n`);
};

// Each store's clients are imported only when chosen: under tsx's loader, kysely alone
// takes over a second to import, which every instance start would pay for nothing.
async function openRedis(config: InstanceConfig): Promise<Backend> {
  const [{ Redis }, { redisBus, redisStore }] = await Promise.all([
    import('ioredis'),
    import('@keyward/redis'),
  ]);
  const client = new Redis(config.url, { maxRetriesPerRequest: 2 });
  client.on('error', onError);
  await client.ping();
  const subscriber = config.channel === undefined ? undefined : client.duplicate();
  subscriber?.on('error', onError);
  return {
    store: redisStore(client, { namespace: config.namespace }),
    ...(subscriber && {
      bus: redisBus({ publisher: client, subscriber, channel: config.channel, onError }),
    }),
    async close() {
      subscriber?.disconnect();
      await client.quit();
    },
  };
}

async function openPostgres(config: InstanceConfig): Promise<Backend> {
  const [{ default: pg }, { Kysely, PostgresDialect }, { kyselyStore, migrate, postgresBus }] =
    await Promise.all([import('pg'), import('kysely'), import('@keyward/kysely')]);
  const pool = new pg.Pool({ connectionString: config.url, max: 4 });
  pool.on('error', onError);
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  await migrate(db, { table: config.namespace });
  // LISTEN holds a connection for good: one of its own, never one of the pool's.
  let listener: InstanceType<typeof pg.Client> | undefined;
  if (config.channel !== undefined) {
    listener = new pg.Client({ connectionString: config.url });
    await listener.connect();
  }
  return {
    store: kyselyStore(db, { table: config.namespace }),
    ...(listener && {
      bus: postgresBus({ db, connection: listener, channel: config.channel, onError }),
    }),
    async close() {
      await listener?.end();
      await db.destroy();
    },
  };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.KEYWARD_INSTANCE ?? 'null') as InstanceConfig | null;
  if (!config) throw new Error('KEYWARD_INSTANCE (JSON) is required');
  const backend = await (config.store === 'redis' ? openRedis(config) : openPostgres(config));
  // Store reads on the verification path, so the test can tell a cache hit from a miss.
  let storeReads = 0;
  const service = createKeyService({
    store: {
      ...backend.store,
      findByLookup(lookup) {
        storeReads++;
        return backend.store.findByLookup(lookup);
      },
    },
    bus: backend.bus,
    cache: { ttlMs: config.cacheTtlMs },
    onError,
  });
  // A second listener next to the service's, called in the same loop over listeners: its
  // clock reading is when this process learned of the event. Epoch milliseconds with a
  // fraction, comparable across processes.
  const busArrivals = new Map<string, number>();
  await backend.bus?.subscribe((event) => {
    busArrivals.set(event.keyId, performance.timeOrigin + performance.now());
  });
  // A URL printed before the subscription is live would let a test revoke into the void.
  await service.ready();
  const server = await startServer[config.framework]({
    service,
    guardedPath: config.guardedPath,
  });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await server.close();
      await service.close();
      await backend.close();
      process.exit(0);
    } catch (error) {
      onError(error);
      process.exit(1);
    }
  };
  process.on('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
  // The test asks over IPC what it cannot see over HTTP: whether a key sits in the cache,
  // and when the bus told this process of a key's revocation.
  process.on('message', (message: unknown) => {
    const question = message as InstanceQuestion & { id: number };
    if (question.type === 'stats') {
      process.send?.({ id: question.id, answer: { ...service.stats(), storeReads } });
    } else if (question.type === 'busArrival') {
      process.send?.({ id: question.id, answer: busArrivals.get(question.keyId) ?? null });
    }
  });

  process.stdout.write(`listening on ${server.url}\n`);
}

main().catch((error: unknown) => {
  onError(error);
  process.exit(1);
});
