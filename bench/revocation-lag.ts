/**
 * Revocation lag across two instances: from instance A's publish of a revocation to
 * instance B's bus handing it over, for each bus on each store (pub/sub or LISTEN/NOTIFY,
 * and the invalidation log). Both instances run in this process, so one monotonic clock
 * times both ends. The buses of a store take turns, in rounds of a fifth of the count
 * each, so a noisy moment of the machine weighs on both alike. Prints p50/p99 per bus.
 *
 *   tsx --conditions=keyward-source bench/revocation-lag.ts [revocations per bus, 200]
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createKeyService, type InvalidationBus, type KeyStore } from '@keyward/core';
import { kyselyStore, migrate, postgresBus, postgresLogBus } from '@keyward/kysely';
import { redisBus, redisStore, redisStreamBus } from '@keyward/redis';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const COUNT = Number(process.argv[2] ?? 200);
const ROUNDS = 5;
const CHEAP = { memoryCost: 1024, timeCost: 1, parallelism: 1, allowWeakParameters: true };

interface Instance {
  store: KeyStore;
  bus: InvalidationBus;
}

/** Times `count` events from A's publish to B's delivery; the lags, in ms. */
async function measure(count: number, a: Instance, b: Instance): Promise<number[]> {
  const sentAt = new Map<string, number>();
  const lags: number[] = [];
  const timedA: InvalidationBus = {
    ...a.bus,
    vouchesForView: a.bus.vouchesForView,
    publish(event) {
      sentAt.set(event.keyId, performance.now());
      return a.bus.publish(event);
    },
    subscribe: (listener, options) => a.bus.subscribe(listener, options),
  };
  const timedB: InvalidationBus = {
    vouchesForView: b.bus.vouchesForView,
    publish: (event) => b.bus.publish(event),
    subscribe: (listener, options) =>
      b.bus.subscribe((event) => {
        const at = sentAt.get(event.keyId);
        if (at !== undefined) lags.push(performance.now() - at);
        listener(event);
      }, options),
  };
  const keysA = createKeyService({ store: a.store, bus: timedA, argon2: CHEAP });
  const keysB = createKeyService({ store: b.store, bus: timedB, argon2: CHEAP });
  await Promise.all([keysA.ready(), keysB.ready()]);
  const owner = `lag_${randomBytes(4).toString('hex')}`;
  for (let i = 0; i < count; i++) {
    const key = await keysA.create(owner, `k${i}`);
    await keysB.verify(key.rawKey);
    await keysA.revoke(owner, key.id);
    const deadline = performance.now() + 5000;
    while (lags.length <= i && performance.now() < deadline) await sleep(1);
  }
  await Promise.all([keysA.close(), keysB.close()]);
  return lags;
}

/** Each bus in turn, `ROUNDS` times, fresh instances each time; then one line per bus. */
async function compare(buses: Array<[name: string, instance: () => Instance]>): Promise<void> {
  const lags = new Map<string, number[]>(buses.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, instance] of buses) {
      lags.get(name)?.push(...(await measure(Math.ceil(COUNT / ROUNDS), instance(), instance())));
    }
  }
  for (const [name, all] of lags) {
    all.sort((x, y) => x - y);
    const q = (p: number) => all[Math.min(all.length - 1, Math.ceil(p * all.length) - 1)] ?? NaN;
    console.log(
      `${name.padEnd(28)} n=${all.length}  p50 ${q(0.5).toFixed(2)} ms  p99 ${q(0.99).toFixed(2)} ms  max ${q(1).toFixed(2)} ms`,
    );
  }
}

async function postgres(): Promise<void> {
  const table = `kwlag_${randomBytes(4).toString('hex')}`;
  const logTable = `${table}_log`;
  const channel = `${table}_ch`;
  const dbs: Kysely<unknown>[] = [];
  const clients: pg.Client[] = [];
  const db = () => {
    const k = new Kysely<unknown>({
      dialect: new PostgresDialect({
        pool: new pg.Pool({ connectionString: DATABASE_URL, max: 4 }),
      }),
    });
    dbs.push(k);
    return k;
  };
  const connect = async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    clients.push(client);
    await client.connect();
    return client;
  };
  const setup = db();
  await migrate(setup, { table, logTable });
  try {
    const pubsub = () => {
      const d = db();
      return {
        store: kyselyStore(d, { table }),
        bus: postgresBus({ db: d, channel, connect, onError: console.error }),
      };
    };
    const log = () => {
      const d = db();
      return {
        store: kyselyStore(d, { table }),
        bus: postgresLogBus({ db: d, logTable, channel, connect, onError: console.error }),
      };
    };
    await compare([
      ['postgres LISTEN/NOTIFY', pubsub],
      ['postgres log', log],
    ]);
  } finally {
    await sql`drop table if exists ${sql.table(table)}, ${sql.table(logTable)}`.execute(setup);
    await Promise.allSettled(clients.map((c) => c.end()));
    await Promise.allSettled(dbs.map((d) => d.destroy()));
  }
}

async function redis(): Promise<void> {
  const namespace = `kwlag-${randomBytes(4).toString('hex')}`;
  const clients: Redis[] = [];
  const client = () => {
    const c = new Redis(REDIS_URL);
    clients.push(c);
    return c;
  };
  try {
    const pubsub = () => {
      const c = client();
      return {
        store: redisStore(c, { namespace }),
        bus: redisBus({
          publisher: c,
          subscriber: client(),
          channel: `${namespace}:ch`,
          onError: console.error,
        }),
      };
    };
    const log = () => {
      const c = client();
      return {
        store: redisStore(c, { namespace }),
        bus: redisStreamBus({
          publisher: c,
          subscriber: client(),
          key: `${namespace}:log`,
          onError: console.error,
        }),
      };
    };
    await compare([
      ['redis pub/sub', pubsub],
      ['redis stream log', log],
    ]);
  } finally {
    const cleaner = client();
    const left = await cleaner.keys(`*${namespace}*`);
    if (left.length > 0) await cleaner.del(...left);
    for (const c of clients) c.disconnect();
  }
}

await postgres();
await redis();
