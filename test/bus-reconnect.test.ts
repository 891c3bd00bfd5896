/**
 * The invalidation bus across a lost connection, on real servers: `ready()` rejects when
 * the bus cannot subscribe, and a bus whose connection drops listens again by itself and
 * then empties the service's cache, since a revocation published during the gap never
 * reached it. The Redis bus runs on a private redis-server the test kills and restarts;
 * the Postgres bus listens through a TCP proxy the test cuts.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createKeyService,
  type InvalidationBus,
  type KeyService,
  type KeyStore,
  memoryStore,
} from '@keyward/core';
import { postgresBus } from '@keyward/kysely';
import { redisBus } from '@keyward/redis';
import { Redis, type RedisOptions } from 'ioredis';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { freePort, type RedisServerProcess, startRedisServer } from './support/redis-server.js';
import { DATABASE_URL, postgresReachable } from './support/services.js';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.js';

const postgres = await postgresReachable();
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  // Each runs whatever the others did, so a failed test leaves no server behind.
  const failures: unknown[] = [];
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, 'cleanup failed');
});

/** A store shared by the instances, counting the reads each one makes: a read means the
 * key was not in that instance's cache. */
function countingStore(shared: KeyStore): { store: KeyStore; reads: () => number } {
  let reads = 0;
  return {
    store: {
      ...shared,
      findByLookup(lookup) {
        reads++;
        return shared.findByLookup(lookup);
      },
    },
    reads: () => reads,
  };
}

function service(store: KeyStore, bus: InvalidationBus, errors: unknown[]): KeyService {
  const keys = createKeyService({
    store,
    bus,
    onError: (error) => errors.push(error),
    cache: { ttlMs: 60_000 },
  });
  cleanups.push(() => keys.close());
  return keys;
}

/**
 * Instance B caches two keys; its bus connection goes away; instance A revokes one (its
 * event is lost); the connection comes back. B must then have verified nothing from before
 * the gap, refuse the revoked key, and receive events again.
 */
async function revokedDuringTheGap(setup: {
  a: KeyService;
  b: KeyService;
  bReads: () => number;
  breakBus(): Promise<void>;
  mendBus(): Promise<void>;
}): Promise<void> {
  const { a, b, bReads } = setup;
  await Promise.all([a.ready(), b.ready()]);
  const owner = `owner_${randomUUID()}`;
  const revoked = await a.create(owner, 'revoked while the bus was down');
  const kept = await a.create(owner, 'kept');
  for (const key of [revoked, kept]) expect(await b.verify(key.rawKey)).toMatchObject({ ok: true });
  expect(b.verifyCached(revoked.rawKey)).toBeDefined();
  const readsBefore = bReads();

  await setup.breakBus();
  expect(await a.revoke(owner, revoked.id)).toBe(true);
  await sleep(300);
  await setup.mendBus();

  // Back and listening: B's cache holds nothing verified before the gap.
  await vi.waitFor(() => expect(b.stats().cachedKeys).toBe(0), { timeout: 10_000 });
  expect(await b.verify(revoked.rawKey)).toEqual({ ok: false, reason: 'unknown_key' });
  expect(await b.verify(kept.rawKey)).toMatchObject({ ok: true });
  expect(bReads()).toBe(readsBefore + 2);

  // And an event published now reaches B.
  expect(b.verifyCached(kept.rawKey)).toBeDefined();
  expect(await a.revoke(owner, kept.id)).toBe(true);
  await vi.waitFor(() => expect(b.verifyCached(kept.rawKey)).toBeUndefined(), {
    timeout: 5_000,
  });
}

describe('Redis bus', () => {
  const servers: RedisServerProcess[] = [];
  const clients: Redis[] = [];
  const client = (port: number, options: RedisOptions = {}) => {
    const redis = new Redis(port, '127.0.0.1', { retryStrategy: () => 50, ...options });
    redis.on('error', () => {});
    clients.push(redis);
    return redis;
  };
  cleanups.push(async () => {
    for (const redis of clients) redis.disconnect();
    for (const server of servers) await server.kill();
  });

  // ioredis resubscribes by itself unless told not to; the bus must not depend on it.
  it.each([true, false])(
    'resubscribes after its server restarts, and the service re-verifies every key (autoResubscribe: %s)',
    async (autoResubscribe) => {
      const redis = await startRedisServer();
      servers.push(redis);
      const channel = `kwtest:${randomUUID()}`;
      const shared = memoryStore();
      const counted = countingStore(shared);
      const errors: unknown[] = [];
      const bus = () =>
        redisBus({
          // Fails at once while the server is down, rather than waiting for it.
          publisher: client(redis.port, { enableOfflineQueue: false }),
          subscriber: client(redis.port, { autoResubscribe }),
          channel,
          onError: (error) => errors.push(error),
        });
      const a = service(shared, bus(), errors);
      const b = service(counted.store, bus(), errors);
      await revokedDuringTheGap({
        a,
        b,
        bReads: counted.reads,
        breakBus: () => redis.kill(),
        async mendBus() {
          await redis.start();
          // A's publisher must be back before A revokes again.
          await vi.waitFor(() => expect(clients.every((c) => c.status === 'ready')).toBe(true));
        },
      });
      // The one lost publish, reported by A rather than thrown at the revoking caller.
      expect(errors.length).toBeGreaterThan(0);
    },
  );

  it('ready() rejects when the subscriber cannot subscribe', async () => {
    const closed = await freePort();
    const keys = createKeyService({
      store: memoryStore(),
      bus: redisBus({
        publisher: client(closed, { enableOfflineQueue: false }),
        subscriber: client(closed, { enableOfflineQueue: false }),
        onError: () => {},
      }),
      onError: () => {},
    });
    cleanups.push(() => keys.close());
    const failure = await keys.ready().then(
      () => 'resolved',
      (error: unknown) => error,
    );
    expect(failure).toMatchObject({
      code: 'service_unavailable',
      message: expect.stringMatching(/^keyward: the invalidation bus could not subscribe/),
      cause: expect.any(Error),
    });
  });
});

describe.skipIf(!postgres)('Postgres bus', () => {
  const url = new URL(DATABASE_URL);
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  const opened: pg.Client[] = [];
  /** A new client for the bus, through `port` (the proxy's) or straight to the server. */
  const connectTo = (port: string) => async () => {
    const through = new URL(url);
    through.port = port;
    const pgClient = new pg.Client({
      connectionString: through.toString(),
      connectionTimeoutMillis: 1000,
    });
    opened.push(pgClient);
    await pgClient.connect();
    return pgClient;
  };
  let proxy: TcpProxy | undefined;
  cleanups.push(async () => {
    await Promise.all(opened.map((c) => c.end().catch(() => undefined)));
    await proxy?.close();
    await db.destroy();
  });

  it('opens a new LISTEN connection after its own is cut, and the service re-verifies every key', async () => {
    const tcp = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    proxy = tcp;
    const channel = `kwtest_${randomUUID().replaceAll('-', '')}`;
    const shared = memoryStore();
    const counted = countingStore(shared);
    const errors: unknown[] = [];
    const onError = (error: unknown) => errors.push(error);
    let bConnects = 0;
    const throughProxy = connectTo(String(tcp.port));
    const a = service(
      shared,
      postgresBus({ db, channel, onError, connect: connectTo(url.port || '5432') }),
      errors,
    );
    const b = service(
      counted.store,
      postgresBus({
        db,
        channel,
        onError,
        connect: () => {
          bConnects++;
          return throughProxy();
        },
      }),
      errors,
    );
    await revokedDuringTheGap({
      a,
      b,
      bReads: counted.reads,
      breakBus: () => tcp.cut(),
      mendBus: () => tcp.restore(),
    });
    // The first connection, then at least the one that worked after the cut.
    expect(bConnects).toBeGreaterThanOrEqual(2);
    expect(errors.length).toBeGreaterThan(0);
  });

  it('ready() rejects when LISTEN fails on the connection given', async () => {
    const ended = await connectTo(url.port || '5432')();
    await ended.end();
    const keys = createKeyService({
      store: memoryStore(),
      bus: postgresBus({ db, connection: ended, onError: () => {} }),
      onError: () => {},
    });
    cleanups.push(() => keys.close());
    await expect(keys.ready()).rejects.toMatchObject({
      code: 'service_unavailable',
      message: expect.stringMatching(/^keyward: the invalidation bus could not subscribe/),
      cause: expect.any(Error),
    });
  });

  it('ready() rejects when the connect factory fails', async () => {
    const closed = String(await freePort());
    const keys = createKeyService({
      store: memoryStore(),
      bus: postgresBus({ db, connect: connectTo(closed), onError: () => {} }),
      onError: () => {},
    });
    cleanups.push(() => keys.close());
    await expect(keys.ready()).rejects.toMatchObject({
      message: expect.stringMatching(/^keyward: the invalidation bus could not subscribe/),
      cause: expect.objectContaining({ code: 'ECONNREFUSED' }),
    });
  });
});
