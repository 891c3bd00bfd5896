/**
 * Store outages under load, over real HTTP: the store's server is reached through a TCP
 * proxy that the test breaks and mends while several clients keep sending requests.
 *
 * The failure policy of docs/design.md, observed from outside: an unverified key is never
 * accepted nor refused during the outage (503 with Retry-After, never 200, 401 or 500),
 * cached keys keep working, a create leaves nothing behind, the service recovers by itself
 * once the store is back, and lastUsedAt values noted during the outage reach the store.
 *
 * Two kinds of fault: `cut` (the server went away: connections reset, new ones refused)
 * and `stall` (a partition: connections stay open, nothing crosses; the bytes held meanwhile
 * are delivered when it heals, so late replies come back after their requests gave up).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createKeyService,
  generateKey,
  type KeyService,
  type KeyStore,
  type StoredKey,
} from '@keyward/core';
import { kyselyStore, migrate } from '@keyward/kysely';
import { redisStore } from '@keyward/redis';
import { CHEAP_ARGON2, type RunningServer, sendRequest } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startServer } from './support/servers.js';
import { DATABASE_URL, postgresReachable, REDIS_URL, redisReachable } from './support/services.js';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.js';

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);

/** Short, so that 503s come quickly and the test stays short; hosts keep the default or
 * pick what their callers tolerate. */
const STORE_TIMEOUT_MS = 1000;
const RECOVERY_LIMIT_MS = 5000;
const GUARDED_PATH = '/test/protected';

type Fault = 'cut' | 'stall';
type Adapter = keyof typeof startServer;

interface StoreUnderFault {
  proxy: TcpProxy;
  /** The store the service uses: its client reaches the server through the proxy. */
  store: KeyStore;
  /** The same data, reached directly, to look at it while the proxy is down. */
  direct: KeyStore;
  /** Errors the clients emitted as events (not through a rejected call). */
  clientErrors: unknown[];
  /** Starts a slow call of the host's own on the same client, so one is in flight when
   * the fault hits; it settles either way. */
  hostCallInFlight?(): Promise<unknown>;
  close(): Promise<void>;
}

function hostAndPort(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || defaultPort) };
}

async function postgresUnderFault(): Promise<StoreUnderFault> {
  const target = hostAndPort(DATABASE_URL, 5432);
  const proxy = await startTcpProxy(target);
  const table = `keyward_outage_${randomUUID().slice(0, 8)}`;
  const directDb = new Kysely({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: DATABASE_URL, max: 2 }) }),
  });
  await migrate(directDb, { table });

  const proxied = new URL(DATABASE_URL);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  const clientErrors: unknown[] = [];
  const pool = new pg.Pool({
    connectionString: proxied.toString(),
    max: 4,
    // Without it a connect to an unreachable server waits for the kernel's TCP timeout,
    // and a request behind it waits for storeTimeoutMs instead of failing at once.
    connectionTimeoutMillis: 1000,
  });
  // pg emits 'error' on a client whose connection drops; the pool listens only on idle
  // clients, and Kysely adds no listener on the ones it has checked out, so without this
  // an outage in the middle of a query is an uncaught exception that ends the process.
  pool.on('error', (error) => clientErrors.push(error));
  pool.on('connect', (client) => client.on('error', (error) => clientErrors.push(error)));
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });

  return {
    proxy,
    store: kyselyStore(db, { table }),
    direct: kyselyStore(directDb, { table }),
    clientErrors,
    hostCallInFlight: () => sql`select pg_sleep(1)`.execute(db).catch((error) => error),
    async close() {
      await db.destroy();
      await proxy.close();
      await sql`drop table if exists ${sql.table(table)}`.execute(directDb);
      await directDb.destroy();
    },
  };
}

async function redisUnderFault(): Promise<StoreUnderFault> {
  const target = hostAndPort(REDIS_URL, 6379);
  const proxy = await startTcpProxy(target);
  const namespace = `kwoutage-${randomUUID().slice(0, 8)}`;
  const clientErrors: unknown[] = [];
  const client = new Redis({
    host: '127.0.0.1',
    port: proxy.port,
    lazyConnect: true,
    // Commands fail at once while disconnected instead of queueing until a reconnect…
    enableOfflineQueue: false,
    // …and the ones in flight when the connection drops are not sent again later.
    maxRetriesPerRequest: 0,
    // ioredis's default backoff grows to 5 s, which alone could exceed the recovery bound.
    retryStrategy: (attempt) => Math.min(attempt * 100, 500),
    connectTimeout: 1000,
    // A connection that goes silent with commands pending is dropped and reconnected;
    // without it a partition leaves the socket open until TCP gives up, minutes later.
    socketTimeout: 2000,
  });
  client.on('error', (error) => clientErrors.push(error));
  const direct = new Redis(REDIS_URL);
  // With no offline queue, a command sent before the connection is ready fails: connect
  // first (a host does the same before it starts serving).
  await client.connect();

  return {
    proxy,
    store: redisStore(client, { namespace }),
    direct: redisStore(direct, { namespace }),
    clientErrors,
    async close() {
      client.disconnect();
      await proxy.close();
      const left = await direct.keys(`${namespace}:*`);
      if (left.length > 0) await direct.del(...left);
      await direct.quit();
    },
  };
}

/** What a load request sends: a key in the cache, a valid key never used before the
 * outage, a well-formed key the store does not hold, a list (store read with a cached key),
 * a malformed key (refused offline). */
type Kind = 'cached' | 'cold' | 'unknown' | 'list' | 'malformed';

interface Sample {
  kind: Kind | 'create';
  sentAt: number;
  doneAt: number;
  status: number;
  code: string | undefined;
  retryAfter: string | undefined;
}

interface Accounts {
  ownerId: string;
  /** Manages the account; cached before the outage. */
  admin: string;
  /** Cached before the outage, used during it, never after: its lastUsedAt is pending. */
  cached: { id: string; rawKey: string };
  /** Valid keys never used before the outage, so never in the cache. */
  cold: string[];
  ids: string[];
}

async function makeAccounts(service: KeyService): Promise<Accounts> {
  const ownerId = `acct_outage_${randomUUID()}`;
  const admin = await service.create(ownerId, 'admin');
  const cached = await service.create(ownerId, 'cached');
  const cold = [];
  for (let i = 0; i < 4; i++) cold.push(await service.create(ownerId, `cold ${i}`));
  return {
    ownerId,
    admin: admin.rawKey,
    cached: { id: cached.id, rawKey: cached.rawKey },
    cold: cold.map((k) => k.rawKey),
    ids: [admin, cached, ...cold].map((k) => k.id).sort(),
  };
}

function guarded(rawKey: string) {
  return { path: GUARDED_PATH, headers: { 'X-API-Key': rawKey } };
}

async function send(url: string, kind: Sample['kind'], request: Parameters<typeof sendRequest>[1]) {
  const sentAt = Date.now();
  try {
    const res = await sendRequest(url, request);
    const retryAfter = res.headers['retry-after'];
    return {
      kind,
      sentAt,
      doneAt: Date.now(),
      status: res.status,
      code: (res.json as { error?: { code?: string } } | undefined)?.error?.code,
      retryAfter: Array.isArray(retryAfter) ? retryAfter.join() : retryAfter,
    } satisfies Sample;
  } catch {
    // Status 0: the host app itself failed to answer, which no outage of the store excuses.
    return {
      kind,
      sentAt,
      doneAt: Date.now(),
      status: 0,
      code: 'no answer',
      retryAfter: undefined,
    };
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? NaN;

const OUTAGE_KEY_NAME = 'made during the outage';
type Phase = 'before' | 'outage' | 'outage, cached key idle' | 'recovering' | 'done';

async function runScenario(adapter: Adapter, open: () => Promise<StoreUnderFault>, fault: Fault) {
  const target = await open();
  const serviceErrors: unknown[] = [];
  let outageAt = 0;
  const startFault = async () => {
    outageAt = Date.now();
    if (fault === 'cut') await target.proxy.cut();
    else target.proxy.stall();
  };
  /** How the store call of the create made during the outage ended, whatever the
   * client was told. */
  let outageInsert: 'pending' | 'failed' | 'landed' = 'pending';
  const store: KeyStore = {
    ...target.store,
    insert(key, options) {
      if (key.name !== OUTAGE_KEY_NAME) return target.store.insert(key, options);
      // A partition that strikes as the insert begins: its statements wait on an open
      // connection and, when it heals, complete after the client was told 503.
      if (fault === 'stall') void startFault();
      const inserting = target.store.insert(key, options);
      inserting.then(
        (result) => {
          outageInsert = result.ok ? 'landed' : 'failed';
        },
        () => {
          outageInsert = 'failed';
        },
      );
      return inserting;
    },
  };
  const service = createKeyService({
    store,
    argon2: CHEAP_ARGON2,
    storeTimeoutMs: STORE_TIMEOUT_MS,
    lastUsedFlushIntervalMs: 200,
    onError: (error) => serviceErrors.push(error),
  });
  let server: RunningServer | undefined;
  try {
    server = await startServer[adapter]({ service, guardedPath: GUARDED_PATH });
    const { url } = server;
    const accounts = await makeAccounts(service);
    for (const key of [accounts.admin, accounts.cached.rawKey]) {
      expect((await sendRequest(url, guarded(key))).status).toBe(200);
    }

    let phase: Phase = 'before';
    const samples: Sample[] = [];
    const sends: Record<Exclude<Phase, 'done'>, Kind[]> = {
      before: ['cached', 'list', 'unknown', 'malformed'],
      outage: ['cached', 'cold', 'list', 'unknown', 'malformed'],
      // The cached key is left alone from here on, so its last use is one the store
      // cannot take yet: its lastUsedAt has to survive several failed flushes.
      'outage, cached key idle': ['cold', 'list', 'unknown', 'malformed'],
      recovering: ['cold', 'list', 'unknown'],
    };
    const requestFor = (kind: Kind, n: number) => {
      switch (kind) {
        case 'cached':
          return guarded(accounts.cached.rawKey);
        case 'cold':
          return guarded(accounts.cold[n % accounts.cold.length] as string);
        case 'unknown':
          return guarded(generateKey().rawKey);
        case 'malformed':
          return guarded('rep_not-a-key');
        case 'list':
          return { path: '/v1/api-keys', headers: { 'X-API-Key': accounts.admin } };
      }
    };
    // A client per kind and two for those the outage slows down, so a stalled request
    // (which waits storeTimeoutMs) holds up no other kind of traffic.
    const loadClient = async (kind: Kind, offset: number) => {
      for (let n = offset; phase !== 'done'; n++) {
        if (sends[phase].includes(kind)) samples.push(await send(url, kind, requestFor(kind, n)));
        await sleep(10);
      }
    };
    const clients: Kind[] = [
      'cached',
      'malformed',
      'cold',
      'cold',
      'list',
      'list',
      'unknown',
      'unknown',
    ];
    const load = Promise.all(clients.map((kind, i) => loadClient(kind, i)));

    await sleep(400);
    const hostCall = target.hostCallInFlight?.();
    await sleep(50);
    const createOutageKey = () =>
      send(url, 'create', {
        method: 'POST',
        path: '/v1/api-keys',
        headers: { 'X-API-Key': accounts.admin },
        body: { name: OUTAGE_KEY_NAME },
      });
    let creating: Promise<Sample>;
    if (fault === 'cut') {
      await startFault();
      creating = createOutageKey();
    } else {
      creating = createOutageKey();
      for (const deadline = Date.now() + 2000; outageAt === 0; await sleep(1)) {
        if (Date.now() > deadline) throw new Error('the create never reached the store');
      }
    }
    phase = 'outage';

    await sleep(200);
    const lastUsedBefore = (await target.direct.listByOwner(accounts.ownerId)).find(
      (k) => k.id === accounts.cached.id,
    )?.lastUsedAt;
    // A stalled request only gives up after storeTimeoutMs: a stall lasts longer, so that
    // enough requests fit in it.
    await sleep(fault === 'cut' ? 500 : 1500);
    phase = 'outage, cached key idle';
    await sleep(fault === 'cut' ? 700 : 2000);
    const create = await creating;

    phase = 'recovering';
    const restoredAt = Date.now();
    await target.proxy.restore();

    let recoveredAt: number | undefined;
    while (Date.now() - restoredAt < RECOVERY_LIMIT_MS + 2000) {
      const first = samples.find(
        (s) => s.kind === 'cold' && s.status === 200 && s.sentAt >= restoredAt,
      );
      if (first) {
        recoveredAt = first.doneAt;
        break;
      }
      await sleep(20);
    }
    await sleep(200);
    phase = 'done';
    await Promise.all([load, hostCall]);
    const cachedUses = samples.filter((s) => s.kind === 'cached');
    const lastCachedUse = {
      sentAt: Math.max(...cachedUses.map((s) => s.sentAt)),
      doneAt: Math.max(...cachedUses.map((s) => s.doneAt)),
    };

    // The outage is over: everything answers as in normal operation.
    for (const key of accounts.cold) {
      expect((await sendRequest(url, guarded(key))).status).toBe(200);
    }
    expect((await sendRequest(url, guarded(generateKey().rawKey))).status).toBe(401);

    // lastUsedAt noted during the outage reaches the store once it is back.
    await eventually(() => service.flushLastUsed());
    const rows = await target.direct.listByOwner(accounts.ownerId);
    const cachedRow = rows.find((k) => k.id === accounts.cached.id) as StoredKey;

    // A create during the outage left nothing behind (a stalled insert that completes
    // late is deleted by the service, hence the wait).
    await eventually(async () => {
      const ids = (await target.direct.listByOwner(accounts.ownerId)).map((k) => k.id).sort();
      expect(ids).toEqual(accounts.ids);
    });

    return {
      samples,
      outageAt,
      restoredAt,
      recoveredAt,
      create,
      outageInsert,
      lastUsedBefore,
      lastCachedUse,
      lastUsedAfter: cachedRow.lastUsedAt,
      serviceErrors,
      clientErrors: target.clientErrors,
    };
  } finally {
    await server?.close();
    await service.close().catch(() => {});
    await target.close();
  }
}

/** Retries until the check passes, for what settles asynchronously after recovery. */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

const allowed: Record<Kind, number[]> = {
  cached: [200],
  malformed: [401],
  cold: [200, 503],
  unknown: [401, 503],
  list: [200, 503],
};

const scenarios: Array<[string, Adapter, Fault, boolean, () => Promise<StoreUnderFault>]> = [
  ['Postgres', 'express', 'cut', postgres, postgresUnderFault],
  ['Postgres', 'fastify', 'stall', postgres, postgresUnderFault],
  ['Redis', 'fastify', 'cut', redis, redisUnderFault],
  ['Redis', 'express', 'stall', redis, redisUnderFault],
];

const report: string[] = [];
afterAll(() => {
  if (report.length > 0) console.info(`store outages:\n${report.join('\n')}`);
});

describe('store outage under load', () => {
  for (const [storeName, adapter, fault, reachable, open] of scenarios) {
    it.skipIf(!reachable)(
      `${storeName}, ${adapter}, ${fault}: fails closed with 503, keeps cached keys, recovers by itself`,
      async () => {
        const r = await runScenario(adapter, open, fault);
        const inOutage = (s: Sample) => s.sentAt >= r.outageAt && s.doneAt <= r.restoredAt;

        // Never a wrong answer, in any phase: no 500, no dropped request, no valid key
        // refused, no cached key turned away.
        const wrong = r.samples.filter((s) => !allowed[s.kind as Kind].includes(s.status));
        expect(wrong).toEqual([]);
        for (const s of r.samples.filter((s) => s.status === 503)) {
          expect(s.code).toBe('service_unavailable');
          expect(s.retryAfter).toMatch(/^[1-9]\d*$/);
        }
        // Before the outage, the store answered.
        const before = r.samples.filter((s) => s.doneAt < r.outageAt);
        expect(before.filter((s) => s.kind === 'list').every((s) => s.status === 200)).toBe(true);
        expect(before.filter((s) => s.kind === 'unknown').every((s) => s.status === 401)).toBe(
          true,
        );

        // During it, whatever needs the store is 503, and there was plenty of it.
        const during = r.samples.filter(inOutage);
        for (const kind of ['cold', 'unknown', 'list'] as const) {
          const ofKind = during.filter((s) => s.kind === kind);
          // A stalled request takes storeTimeoutMs, so a stall fits fewer of them.
          const least = fault === 'cut' ? 5 : 3;
          expect(ofKind.length, `${kind} requests during the outage`).toBeGreaterThanOrEqual(least);
          expect(ofKind.map((s) => s.status)).toEqual(ofKind.map(() => 503));
        }
        const cachedDuring = during.filter((s) => s.kind === 'cached');
        expect(cachedDuring.length).toBeGreaterThanOrEqual(5);

        expect(r.create.status).toBe(503);
        expect(r.create.retryAfter).toMatch(/^[1-9]\d*$/);

        expect(r.recoveredAt, 'a cold key was accepted after the store came back').toBeDefined();
        const recoveryMs = (r.recoveredAt as number) - r.restoredAt;
        expect(recoveryMs).toBeLessThanOrEqual(RECOVERY_LIMIT_MS);

        // Pending during the outage, written after it.
        expect(r.lastUsedBefore?.getTime() ?? 0).toBeLessThan(r.outageAt);
        expect(r.lastUsedAfter?.getTime()).toBeGreaterThanOrEqual(r.lastCachedUse.sentAt);
        expect(r.lastUsedAfter?.getTime()).toBeLessThanOrEqual(r.lastCachedUse.doneAt);

        // The outage was reported to the host, not swallowed.
        expect(r.serviceErrors.length).toBeGreaterThan(0);

        const unavailable = during.filter((s) => s.status === 503).map((s) => s.doneAt - s.sentAt);
        const cachedMs = cachedDuring.map((s) => s.doneAt - s.sentAt);
        report.push(
          `  ${storeName.padEnd(8)} ${adapter.padEnd(7)} ${fault.padEnd(5)} ` +
            `requests ${r.samples.length}, in the outage ${during.length} ` +
            `(503 median ${median(unavailable)} ms, max ${Math.max(...unavailable)} ms; ` +
            `cached 200 median ${median(cachedMs)} ms), create ${r.create.doneAt - r.create.sentAt} ms ` +
            `(its insert ${r.outageInsert}), ` +
            `recovered ${recoveryMs} ms after restore, onError ${r.serviceErrors.length}, ` +
            `client error events ${r.clientErrors.length}`,
        );
      },
      30_000,
    );
  }
});
