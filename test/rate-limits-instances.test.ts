/**
 * Rate limits and credits across 3 instances sharing one store (docs/design.md, "The bound
 * across N instances"): Postgres, Redis, then a Redis Cluster. Each instance is a key service
 * with its own store client and its own Express server on loopback; a client hammers all
 * three. Per window, the admitted count stays within [limit, limit + (N − 1) · L]; credits
 * never go below zero, and once the instances close (returning their leases) the balance
 * plus what was admitted is exactly what the key started with; strict credits admit exactly
 * the balance.
 */
import { randomBytes } from 'node:crypto';
import {
  CREDIT_LEASE_FACTOR,
  createKeyService,
  type KeyService,
  type KeyStore,
  MAX_WINDOW_LEASE,
} from '@keyward/core';
import { kyselyStore, migrate } from '@keyward/kysely';
import { redisStore } from '@keyward/redis';
import { CHEAP_ARGON2, type RunningServer, serviceUnavailable } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster, type TestRedisCluster } from '../packages/redis/test/test-cluster.js';
import { limitClient, readRateLimit, sleep, windowOf } from './support/limit-client.js';
import { startServer, TIMED_PATH } from './support/servers.js';
import { DATABASE_URL, postgresReachable, REDIS_URL, redisReachable } from './support/services.js';

const INSTANCES = 3;
const LIMIT = 60;
const WINDOW_SEC = 2;
/** The figure is over 10 windows (`KEYWARD_LIMIT_WINDOWS=10`); `pnpm test` runs 4,
 * the same check in less than half the time. */
const WINDOWS = Number(process.env.KEYWARD_LIMIT_WINDOWS ?? 4);
const CONNECTIONS = 24;
const GUARDED_PATH = '/test/protected';
const LOAD_PATH = TIMED_PATH;
/** The documented bound: (N − 1) · L, L = ⌈limit / 10⌉ at most MAX_WINDOW_LEASE. */
const BOUND = (INSTANCES - 1) * Math.min(MAX_WINDOW_LEASE, Math.ceil(LIMIT / 10));

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);
const cluster: TestRedisCluster | null = await startRedisCluster().catch((error: unknown) => {
  serviceUnavailable('Redis Cluster (redis-server on spare loopback ports)', error);
  return null;
});
const suffix = () => randomBytes(5).toString('hex');

/** How to build one instance's store (each with its own connections) and clean up. */
interface StoreKind {
  name: string;
  available: boolean;
  setup(): Promise<{ store(): Promise<KeyStore>; teardown(): Promise<void> }>;
}

const kinds: StoreKind[] = [
  {
    name: 'postgres',
    available: postgres,
    async setup() {
      const table = `keyward_rl_${suffix()}`;
      const pools: Kysely<unknown>[] = [];
      const open = () => {
        const db = new Kysely({
          dialect: new PostgresDialect({
            pool: new pg.Pool({ connectionString: DATABASE_URL, max: 4 }),
          }),
        });
        pools.push(db);
        return db;
      };
      await migrate(open(), { table });
      return {
        store: async () => kyselyStore(open(), { table }),
        async teardown() {
          await pools[0]?.schema.dropTable(table).ifExists().execute();
          await Promise.all(pools.map((db) => db.destroy()));
        },
      };
    },
  },
  {
    name: 'redis',
    available: redis,
    async setup() {
      const namespace = `rl-${suffix()}`;
      const clients: Redis[] = [];
      return {
        store: async () => {
          const client = new Redis(REDIS_URL);
          clients.push(client);
          return redisStore(client, { namespace });
        },
        async teardown() {
          const [first] = clients;
          if (first) {
            const names = await first.keys(`${namespace}:*`);
            if (names.length > 0) await first.del(...names);
          }
          for (const client of clients) client.disconnect();
        },
      };
    },
  },
  {
    name: 'redis cluster',
    available: cluster !== null,
    async setup() {
      const namespace = `rl-${suffix()}`;
      return {
        store: async () => redisStore(await (cluster as TestRedisCluster).client(), { namespace }),
        teardown: async () => {},
      };
    },
  },
];

afterAll(async () => {
  await cluster?.stop();
});

describe.each(kinds)('$name: 3 instances', (kind) => {
  if (!kind.available) {
    it.skip(`${kind.name} is not reachable`, () => {});
    return;
  }
  let teardown = async () => {};
  let services: KeyService[] = [];
  let servers: RunningServer[] = [];
  let makeStore: () => Promise<KeyStore> = async () => {
    throw new Error('not set up');
  };

  const startInstances = async () => {
    services = await Promise.all(
      Array.from({ length: INSTANCES }, async () =>
        createKeyService({ store: await makeStore(), argon2: CHEAP_ARGON2 }),
      ),
    );
    servers = await Promise.all(
      services.map((service) => startServer.express({ service, guardedPath: GUARDED_PATH })),
    );
  };
  const stopInstances = async () => {
    await Promise.all(servers.map((server) => server.close()));
    await Promise.all(services.map((service) => service.close()));
  };

  beforeAll(async () => {
    const set = await kind.setup();
    teardown = set.teardown;
    makeStore = set.store;
  });
  afterAll(async () => {
    await teardown();
  });

  /** Hammers the instances in turn until `stopAt`; answers in arrival order. */
  const hammer = async (rawKey: string, stopAt: number) => {
    const client = limitClient(CONNECTIONS);
    const answers: Awaited<ReturnType<typeof client.get>>[] = [];
    let next = 0;
    const worker = async () => {
      while (Date.now() < stopAt) {
        const server = servers[next++ % servers.length] as RunningServer;
        answers.push(await client.get(server.url, LOAD_PATH, { 'X-API-Key': rawKey }));
        await sleep(4);
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
    client.close();
    return answers;
  };

  it(
    `admits within [limit, limit + ${BOUND}] per window over ${WINDOWS} windows`,
    async () => {
      await startInstances();
      const [first] = services as [KeyService];
      const { rawKey } = await first.create(`rl_${suffix()}`, 'limited', {
        rateLimit: { limit: LIMIT, windowSec: WINDOW_SEC },
      });
      const size = WINDOW_SEC * 1000;
      const start = Math.ceil((Date.now() + 100) / size) * size;
      await sleep(start - Date.now());
      const answers = await hammer(rawKey, start + WINDOWS * size);

      const admitted = new Map<number, number>();
      const unexpected: string[] = [];
      for (const answer of answers) {
        const limit = readRateLimit(answer.headers.ratelimit);
        if (!limit) {
          unexpected.push(`${answer.status} without RateLimit: ${answer.body}`);
          continue;
        }
        if (answer.status === 200) {
          const window = windowOf(answer, limit.t, WINDOW_SEC);
          admitted.set(window, (admitted.get(window) ?? 0) + 1);
        } else if (answer.status !== 429) {
          unexpected.push(`${answer.status}: ${answer.body}`);
        }
      }
      expect(unexpected.slice(0, 5)).toEqual([]);
      const counts = Array.from({ length: WINDOWS }, (_, i) => admitted.get(start + i * size) ?? 0);
      console.info(
        `${kind.name}: admitted per window ${counts.join(' ')} (limit ${LIMIT}, bound ${BOUND}), ${answers.length} requests`,
      );
      for (const count of counts) {
        expect(count).toBeGreaterThanOrEqual(LIMIT);
        expect(count).toBeLessThanOrEqual(LIMIT + BOUND);
      }
      await stopInstances();
    },
    (WINDOWS + 4) * WINDOW_SEC * 1000 + 20_000,
  );

  it('credits never go below zero; after close, the balance plus what was admitted is the start', async () => {
    await startInstances();
    const [first] = services as [KeyService];
    const owner = `rl_${suffix()}`;
    const START = 400;
    const { rawKey, id } = await first.create(owner, 'credits', {
      credits: { remaining: START },
    });
    const answers = await hammer(rawKey, Date.now() + 1500);
    const ok = answers.filter((a) => a.status === 200).length;
    const codes = new Set(
      answers.filter((a) => a.status !== 200).map((a) => JSON.parse(a.body).error.code),
    );
    expect([...codes]).toEqual(['credits_exhausted']);
    expect(ok).toBeLessThanOrEqual(START);
    await stopInstances();
    // The leases came back on close: nothing stranded, nothing made up.
    const reader = createKeyService({ store: await makeStore(), argon2: CHEAP_ARGON2 });
    const [listed] = (await reader.list(owner)).filter((key) => key.id === id);
    console.info(
      `${kind.name}: credits admitted ${ok}, left after close ${listed?.credits?.remaining}`,
    );
    expect(ok + (listed?.credits?.remaining ?? Number.NaN)).toBe(START);
    await reader.close();
  }, 20_000);

  it('close() gives unspent credit leases back: the balance plus what was admitted is the start', async () => {
    await startInstances();
    const [first] = services as [KeyService];
    const owner = `rl_${suffix()}`;
    const START = 100_000;
    const { rawKey, id } = await first.create(owner, 'big balance', {
      credits: { remaining: START },
    });
    const reader = createKeyService({ store: await makeStore(), argon2: CHEAP_ARGON2 });
    const remaining = async () =>
      (await reader.list(owner)).find((key) => key.id === id)?.credits?.remaining;
    // One request on each instance: each claims one lease and spends one unit of it, so
    // exactly that much is out. (After a hammer alone, the leftovers can all happen to be 0.)
    const client = limitClient(1);
    for (const server of servers) {
      const answer = await client.get(server.url, LOAD_PATH, { 'X-API-Key': rawKey });
      expect(answer.status).toBe(200);
    }
    client.close();
    expect(await remaining()).toBe(START - INSTANCES * CREDIT_LEASE_FACTOR);
    const answers = await hammer(rawKey, Date.now() + 300);
    const ok = INSTANCES + answers.filter((a) => a.status === 200).length;
    expect(ok).toBe(INSTANCES + answers.length);
    const held = (await remaining()) ?? Number.NaN;
    expect(ok + held).toBeLessThanOrEqual(START);
    await stopInstances();
    // All back after they closed.
    const after = await remaining();
    console.info(`${kind.name}: ${ok} admitted, ${START - ok - held} out on leases, back on close`);
    expect(ok + (after ?? Number.NaN)).toBe(START);
    await reader.close();
  }, 20_000);

  it('strict credits admit exactly the balance', async () => {
    await startInstances();
    const [first] = services as [KeyService];
    const owner = `rl_${suffix()}`;
    const START = 150;
    const { rawKey } = await first.create(owner, 'strict', {
      credits: { remaining: START, strict: true },
    });
    const answers = await hammer(rawKey, Date.now() + 1500);
    const ok = answers.filter((a) => a.status === 200).length;
    expect(ok).toBe(START);
    await stopInstances();
    const reader = createKeyService({ store: await makeStore(), argon2: CHEAP_ARGON2 });
    expect((await reader.list(owner))[0]?.credits?.remaining).toBe(0);
    await reader.close();
  }, 20_000);
});
