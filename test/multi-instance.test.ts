import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CreatedApiKey, createKeyService, type KeyService } from '@keyward/core';
import { kyselyStore, migrate } from '@keyward/kysely';
import { redisStore } from '@keyward/redis';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningInstance, startInstance } from './support/instance-process.js';
import type { InstanceConfig } from './support/instance-server.js';
import { type KeepAliveClient, keepAliveClient } from './support/keep-alive.js';
import { DATABASE_URL, postgresReachable, REDIS_URL, redisReachable } from './support/services.js';

/**
 * Issue 5, item 6: instances of a host app in separate processes, sharing one store. A key
 * revoked through instance A must be refused by instance B within 100 ms when a bus links
 * them, and within B's cache TTL when none does.
 */

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);

const GUARDED = '/v1/whoami';
const REVOCATIONS = 100;
const BUS_BOUND_MS = 100;
/** How long one key's revocation is polled for before it counts as never seen. */
const GIVE_UP_MS = 2_000;
const NO_BUS_TTL_MS = 1_000;
// Argon2 at a fraction of OWASP's cost: hashing 200 keys and verifying each once on B is
// setup, not what is measured. The PHC string carries the parameters to the instances.

const suffix = () => randomBytes(5).toString('hex');
const header = (key: CreatedApiKey) => ({ 'X-API-Key': key.rawKey });

/** An owner with an admin key (used on A to revoke) and `count` keys to revoke. */
async function createKeys(
  service: KeyService,
  count: number,
): Promise<{ admin: CreatedApiKey; keys: CreatedApiKey[] }> {
  const owner = `mi-${suffix()}`;
  const admin = await service.create(owner, 'admin');
  const keys: CreatedApiKey[] = [];
  // In batches: the argon2 queue (64 by default) refuses more waiting hashes than that.
  while (keys.length < count) {
    const batch = Math.min(16, count - keys.length);
    keys.push(
      ...(await Promise.all(
        Array.from({ length: batch }, (_, i) => service.create(owner, `key ${keys.length + i}`)),
      )),
    );
  }
  return { admin, keys };
}

/** `p` in (0, 1], nearest rank. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
}

const ms = (value: number) => `${value.toFixed(1)} ms`;

interface Revocations {
  /** From A's 200 to B's first 401, as the test process receives them: the bus, plus one
   * request's round trip, plus any wait for a CPU. What the acceptance bound is about. */
  refusedAfter: number[];
  /** From A's 200 to the bus event reaching B's process. Negative when it got there before
   * the test saw A's answer (A publishes before it answers). Only to explain the first. */
  deliveredAfter: number[];
}

/**
 * For each key: warm it on B (so it sits in B's positive cache), revoke it through A, then
 * poll B until it answers 401.
 */
async function measureRevocations(
  http: KeepAliveClient,
  a: RunningInstance,
  b: RunningInstance,
  admin: CreatedApiKey,
  keys: readonly CreatedApiKey[],
): Promise<Revocations> {
  const result: Revocations = { refusedAfter: [], deliveredAfter: [] };
  let missed = 0;
  for (const key of keys) {
    // Two uses, one store read: B holds the key in its cache. Without this check, a B that
    // never cached would answer 401 from the store at once and make any bus look instant.
    const readsBefore = (await b.stats()).storeReads;
    for (let use = 0; use < 2; use++) {
      expect((await http.send(b.url, { path: GUARDED, headers: header(key) })).status).toBe(200);
    }
    expect((await b.stats()).storeReads - readsBefore).toBe(1);

    const revoked = await http.send(a.url, {
      method: 'DELETE',
      path: `/v1/api-keys/${key.id}`,
      headers: header(admin),
    });
    expect(revoked.status).toBe(200);
    const revokedAt = performance.now();

    let refusedAfter = Number.POSITIVE_INFINITY;
    while (performance.now() - revokedAt < GIVE_UP_MS) {
      const polled = await http.send(b.url, { path: GUARDED, headers: header(key) });
      if (polled.status === 401) {
        refusedAfter = performance.now() - revokedAt;
        expect(JSON.parse(polled.text)).toMatchObject({ error: { code: 'invalid_api_key' } });
        break;
      }
      expect(polled.status).toBe(200);
      await sleep(2);
    }
    result.refusedAfter.push(refusedAfter);
    const arrival = await b.busArrival(key.id);
    result.deliveredAfter.push(
      arrival === null ? Number.POSITIVE_INFINITY : arrival - (performance.timeOrigin + revokedAt),
    );
    // Two misses already put p99 of 100 at infinity: stop instead of polling on for minutes.
    if (refusedAfter === Number.POSITIVE_INFINITY && ++missed >= 2) break;
  }
  return result;
}

function distribution(values: readonly number[]) {
  const sorted = [...values].sort((x, y) => x - y);
  return {
    n: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

function report(label: string, revocations: Revocations) {
  const refused = distribution(revocations.refusedAfter);
  const delivered = distribution(revocations.deliveredAfter);
  const line =
    `[multi-instance] ${label}, n=${refused.n}: B refused a key revoked through A after ` +
    `p50 ${ms(refused.p50)}, p99 ${ms(refused.p99)}, max ${ms(refused.max)}; ` +
    `the bus reached B after p50 ${ms(delivered.p50)}, p99 ${ms(delivered.p99)}, max ${ms(delivered.max)}`;
  console.info(line);
  return { refused, line };
}

const redisNamespace = `kwtest-mi-${suffix()}`;
const redisChannel = `${redisNamespace}:invalidation`;
const postgresTable = `kw_mi_${suffix()}`;
const onRedis = {
  store: 'redis',
  url: REDIS_URL,
  namespace: redisNamespace,
  guardedPath: GUARDED,
} as const;
const onPostgres = {
  store: 'postgres',
  url: DATABASE_URL,
  namespace: postgresTable,
  guardedPath: GUARDED,
} as const;

// Each adapter plays each part: Express revokes on Redis, Fastify on Postgres.
const instanceConfigs = {
  redisA: { ...onRedis, framework: 'express', channel: redisChannel },
  redisB: { ...onRedis, framework: 'fastify', channel: redisChannel },
  redisBWithoutBus: { ...onRedis, framework: 'fastify', cacheTtlMs: NO_BUS_TTL_MS },
  postgresA: { ...onPostgres, framework: 'fastify', channel: postgresTable },
  postgresB: { ...onPostgres, framework: 'express', channel: postgresTable },
} satisfies Record<string, InstanceConfig>;
type InstanceName = keyof typeof instanceConfigs;
const running = new Map<InstanceName, RunningInstance>();

function instance(name: InstanceName): RunningInstance {
  const found = running.get(name);
  if (!found) throw new Error(`instance ${name} is not running`);
  return found;
}

// All at once, for both stores: tsx processes starting side by side on two cores take
// about 60 % of the time they take in one batch per store.
beforeAll(async () => {
  const names = (Object.keys(instanceConfigs) as InstanceName[]).filter((name) =>
    instanceConfigs[name].store === 'redis' ? redis : postgres,
  );
  const startedAt = performance.now();
  const results = await Promise.allSettled(
    names.map((name) => startInstance(instanceConfigs[name])),
  );
  results.forEach((result, i) => {
    const name = names[i];
    if (result.status === 'fulfilled' && name) running.set(name, result.value);
  });
  for (const result of results) if (result.status === 'rejected') throw result.reason;
  console.info(
    `[multi-instance] ${names.length} instances started in ${ms(performance.now() - startedAt)}`,
  );
});

// Here rather than in the suites, so it also runs when a start failed: the instances go
// first, so their last writes land before their data goes.
afterAll(async () => {
  const stopping = [...running.values()];
  const codes = await Promise.all(stopping.map((i) => i.stop()));
  if (redis) await deleteRedisNamespace(redisNamespace);
  if (postgres) await dropPostgresTable(postgresTable);
  // Exit code 0: each instance closed its server, wrote its last lastUsedAt batch and
  // closed its connections.
  const failed = stopping.filter((_, i) => codes[i] !== 0).map((i) => i.output());
  expect(codes, failed.join('\n---\n')).toEqual(codes.map(() => 0));
});

async function deleteRedisNamespace(namespace: string): Promise<void> {
  const client = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, found] = await client.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 500);
      cursor = next;
      if (found.length > 0) await client.del(...found);
    } while (cursor !== '0');
  } finally {
    await client.quit();
  }
}

async function dropPostgresTable(table: string): Promise<void> {
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    await client.query(`drop table if exists ${table}`);
  } finally {
    await client.end();
  }
}

describe.skipIf(!redis)('instances in separate processes on one Redis', () => {
  let client: Redis;
  let setup: KeyService;
  let http: KeepAliveClient;
  let a: RunningInstance;
  let b: RunningInstance;
  let bWithoutBus: RunningInstance;

  beforeAll(() => {
    client = new Redis(REDIS_URL);
    setup = createKeyService({
      store: redisStore(client, { namespace: redisNamespace }),
      argon2: CHEAP_ARGON2,
      maxKeysPerOwner: REVOCATIONS + 10,
    });
    http = keepAliveClient(4);
    a = instance('redisA');
    b = instance('redisB');
    bWithoutBus = instance('redisBWithoutBus');
  });

  afterAll(async () => {
    http?.close();
    await setup?.close();
    await client?.quit();
  });

  it(`with the Redis bus, B refuses a key revoked through A within ${BUS_BOUND_MS} ms (p99 of ${REVOCATIONS})`, async () => {
    const { admin, keys } = await createKeys(setup, REVOCATIONS);
    const { refused, line } = report(
      'Redis pub/sub',
      await measureRevocations(http, a, b, admin, keys),
    );
    expect(refused.n, line).toBe(REVOCATIONS);
    expect(refused.p99, line).toBeLessThan(BUS_BOUND_MS);
  }, 60_000);

  it(`without a bus, B accepts a key revoked through A until its ${NO_BUS_TTL_MS} ms cache TTL, and refuses it after`, async () => {
    const { admin, keys } = await createKeys(setup, 1);
    const [key] = keys as [CreatedApiKey];
    const warmSent = performance.now();
    const warm = await http.send(bWithoutBus.url, { path: GUARDED, headers: header(key) });
    const warmDone = performance.now();
    expect(warm.status).toBe(200);

    const revoked = await http.send(a.url, {
      method: 'DELETE',
      path: `/v1/api-keys/${key.id}`,
      headers: header(admin),
    });
    expect(revoked.status).toBe(200);
    // A refuses it at once: the revocation is real, B just does not know yet.
    expect((await http.send(a.url, { path: GUARDED, headers: header(key) })).status).toBe(401);
    expect((await http.send(bWithoutBus.url, { path: GUARDED, headers: header(key) })).status).toBe(
      200,
    );

    // Polled every 25 ms: a hit must not extend the entry's life.
    let lastAccepted = Number.NaN;
    let firstRefused = Number.NaN;
    while (performance.now() - warmDone < NO_BUS_TTL_MS + 2_000) {
      const polled = await http.send(bWithoutBus.url, { path: GUARDED, headers: header(key) });
      const at = performance.now();
      if (polled.status === 401) {
        firstRefused = at;
        break;
      }
      expect(polled.status).toBe(200);
      lastAccepted = at;
      await sleep(25);
    }
    console.info(
      `[multi-instance] no bus, cache TTL ${NO_BUS_TTL_MS} ms: B last accepted the revoked key ` +
        `${ms(lastAccepted - warmSent)} and first refused it ${ms(firstRefused - warmSent)} after warming it`,
    );
    // The entry was made between warmSent and warmDone. 50 ms of slack below: lru-cache
    // reads a clock it refreshes on a timer, so an entry's start can be stamped early by
    // as long as the event loop was busy.
    expect(firstRefused - warmSent).toBeGreaterThanOrEqual(NO_BUS_TTL_MS - 50);
    expect(firstRefused - warmDone).toBeLessThanOrEqual(NO_BUS_TTL_MS + 400);
    expect(lastAccepted - warmDone).toBeGreaterThanOrEqual(NO_BUS_TTL_MS - 400);
  });
});

describe.skipIf(!postgres)('instances in separate processes on one Postgres', () => {
  let db: Kysely<Record<string, never>>;
  let setup: KeyService;
  let http: KeepAliveClient;
  let a: RunningInstance;
  let b: RunningInstance;

  beforeAll(async () => {
    db = new Kysely({
      dialect: new PostgresDialect({
        pool: new pg.Pool({ connectionString: DATABASE_URL, max: 4 }),
      }),
    });
    // The instances migrated already; this only makes the order not matter.
    await migrate(db, { table: postgresTable });
    setup = createKeyService({
      store: kyselyStore(db, { table: postgresTable }),
      argon2: CHEAP_ARGON2,
      maxKeysPerOwner: REVOCATIONS + 10,
    });
    http = keepAliveClient(4);
    a = instance('postgresA');
    b = instance('postgresB');
  });

  afterAll(async () => {
    http?.close();
    await setup?.close();
    await db?.destroy();
  });

  it(`with LISTEN/NOTIFY, B refuses a key revoked through A within ${BUS_BOUND_MS} ms (p99 of ${REVOCATIONS})`, async () => {
    const { admin, keys } = await createKeys(setup, REVOCATIONS);
    const { refused, line } = report(
      'Postgres LISTEN/NOTIFY',
      await measureRevocations(http, a, b, admin, keys),
    );
    expect(refused.n, line).toBe(REVOCATIONS);
    expect(refused.p99, line).toBeLessThan(BUS_BOUND_MS);
  }, 60_000);
});
