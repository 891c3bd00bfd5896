/**
 * Secret hygiene, end to end: a raw key, and its secret part, exist in exactly one place
 * outside the client that created it: that key's create response.
 *
 * A whole create/list/rename/guard/revoke flow runs over HTTP on every store, with the
 * error paths besides (bad bodies, wrong and mistyped keys, keys where ids belong, the cap,
 * a store failure). Everything observable is collected: every response's status, headers
 * and body, every write to stdout/stderr and every console call, the onError and
 * onInvalidKey payloads as a host would log them (util.inspect, causes and stacks
 * included), every message on the invalidation bus, and all the store holds afterwards.
 * Then each key is searched for in all of it. The examples get the same treatment as
 * separate processes, their stdout and stderr being the log.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format, inspect } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import {
  createKeyService,
  generateKey,
  type InvalidationBus,
  type KeyStore,
  keyChecksum,
  memoryBus,
  memoryStore,
  parseKey,
} from '@keyward/core';
import { kyselyStore, migrate, postgresBus } from '@keyward/kysely';
import { redisBus, redisStore } from '@keyward/redis';
import { CHEAP_ARGON2, faultyStore, sendRequest, type TestRequest } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startExample } from './support/example-process.js';
import { startPglite } from './support/pglite.js';
import { redisEntries } from './support/redis-dump.js';
import { startServer } from './support/servers.js';
import { DATABASE_URL, postgresReachable, REDIS_URL, redisReachable } from './support/services.js';

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);

const GUARDED_PATH = '/v1/hello';
const CAP = 6;

/** One thing an observer could read: a response, a log line, a hook payload, a store row. */
interface Evidence {
  source: string;
  text: string;
}

/** The 32 characters that make a key: `<prefix>_<lookup 12><secret 32><checksum 6>`. */
const secretOf = (rawKey: string) => rawKey.slice(-38, -6);
const lookupOf = (rawKey: string) => rawKey.slice(-50, -38);

/** What a flow leaves to check: every key it made, where its one create answer is, and
 * keys it presented that were never issued. */
interface FlowKeys {
  created: Array<{ rawKey: string; createdIn: string | null }>;
  presented: string[];
}

/**
 * Asserts that each created key and its secret appear only in their create response
 * (`createdIn`, `null` for a key made through the programmatic API), each presented key
 * nowhere, and each lookup part only there and in the store.
 */
function expectOnlyInCreateResponses(evidence: Evidence[], keys: FlowKeys): void {
  expect(evidence.length).toBeGreaterThan(20);
  const holders = (needle: string) =>
    evidence.filter((e) => e.text.includes(needle)).map((e) => e.source);
  for (const { rawKey, createdIn } of keys.created) {
    const expected = createdIn === null ? [] : [createdIn];
    expect(holders(rawKey), `where ${maskOf(rawKey)} appears`).toEqual(expected);
    expect(holders(secretOf(rawKey)), `where the secret of ${maskOf(rawKey)} appears`).toEqual(
      expected,
    );
    const lookupHolders = holders(lookupOf(rawKey)).filter((s) => !s.startsWith('store'));
    expect(lookupHolders, `where the lookup of ${maskOf(rawKey)} appears`).toEqual(expected);
  }
  for (const rawKey of keys.presented) {
    expect(holders(rawKey), `where presented ${maskOf(rawKey)} appears`).toEqual([]);
    expect(holders(secretOf(rawKey)), `where its secret appears`).toEqual([]);
  }
}

/** A label for assertion messages that is not itself the key. */
const maskOf = (rawKey: string) => `${rawKey.slice(0, 8)}…${rawKey.slice(-6)}`;
/** The text with every key in it masked, so no failure message prints one. */
const maskKeys = (text: string) => text.replace(/rep_[0-9A-Za-z]{50}/g, maskOf);

/** A key of the same account's lookup part with another secret and a valid checksum: it
 * reaches the store and argon2, and is refused as a wrong secret. */
function wrongSecretFor(rawKey: string): string {
  const parsed = parseKey(rawKey);
  if (!parsed) throw new Error('not a key');
  const secret = generateKey().rawKey.slice(-38, -6);
  return `rep_${parsed.lookup}${secret}${keyChecksum('rep', parsed.lookup, secret)}`;
}

/** The key with one secret character changed: a typo, refused by its checksum. */
function typoOf(rawKey: string): string {
  const i = rawKey.length - 20;
  return `${rawKey.slice(0, i)}${rawKey[i] === 'x' ? 'y' : 'x'}${rawKey.slice(i + 1)}`;
}

/**
 * The flow, over HTTP: every management route and the guard, the error paths that take a
 * key, and (with `outage`) a store failure in the middle. Records each response.
 */
async function runFlow(
  url: string,
  bootstrapKey: string,
  evidence: Evidence[],
  options: { cap?: number; outage?: { set(failing: boolean): void } } = {},
): Promise<FlowKeys> {
  const keys: FlowKeys = { created: [], presented: [] };
  let n = 0;
  const call = async (req: TestRequest) => {
    const res = await sendRequest(url, req);
    const source = `response #${++n} ${req.method ?? 'GET'} ${maskKeys(req.path)} -> ${res.status}`;
    evidence.push({
      source,
      text: `${res.status}\n${JSON.stringify(res.headers)}\n${res.text}`,
    });
    return { ...res, source };
  };
  const as = (rawKey: string, extra: Record<string, string> = {}) => ({
    'X-API-Key': rawKey,
    ...extra,
  });
  const json = { 'Content-Type': 'application/json' };
  const create = async (withKey: string, name: string) => {
    const res = await call({
      method: 'POST',
      path: '/v1/api-keys',
      headers: as(withKey),
      body: { name },
    });
    expect(res.status).toBe(201);
    const data = (res.json as { data: { id: string; rawKey: string } }).data;
    keys.created.push({ rawKey: data.rawKey, createdIn: res.source });
    return data;
  };

  const a = await create(bootstrapKey, 'Production Server');
  const b = await create(a.rawKey, 'Staging Server');
  const c = await create(bootstrapKey, 'used only while the store fails');
  expect((await call({ path: '/v1/api-keys', headers: as(bootstrapKey) })).status).toBe(200);
  expect((await call({ method: 'HEAD', path: '/v1/api-keys', headers: as(a.rawKey) })).status).toBe(
    200,
  );
  const renamed = await call({
    method: 'PATCH',
    path: `/v1/api-keys/${a.id}`,
    headers: as(b.rawKey, json),
    body: { name: 'Renamed' },
  });
  expect(renamed.status).toBe(200);
  for (const key of [a.rawKey, b.rawKey, `  ${a.rawKey}  `]) {
    expect((await call({ path: GUARDED_PATH, headers: as(key) })).status).toBe(200);
  }

  // Keys that must be refused, and never echoed or logged on the way.
  const wrongSecret = wrongSecretFor(a.rawKey);
  const typo = typoOf(b.rawKey);
  const unknown = generateKey().rawKey;
  keys.presented.push(wrongSecret, typo, unknown);
  const refused: Array<Record<string, string | string[]>> = [
    as(wrongSecret),
    as(typo),
    as(unknown),
    as(`Bearer ${a.rawKey}`),
    { 'X-API-Key': [a.rawKey, b.rawKey] },
    { Authorization: `Bearer ${unknown}` },
  ];
  for (const headers of refused) {
    expect((await call({ path: GUARDED_PATH, headers })).status).toBe(401);
  }
  // Keys where they do not belong: in an id, in a query string, in a refused body.
  expect(
    (await call({ method: 'DELETE', path: `/v1/api-keys/${a.rawKey}`, headers: as(b.rawKey) }))
      .status,
  ).toBe(404);
  expect((await call({ path: `/v1/api-keys?key=${b.rawKey}`, headers: as(a.rawKey) })).status).toBe(
    200,
  );
  for (const [body, contentType, status] of [
    [`{"name": "${a.rawKey}"`, 'application/json', 400],
    [JSON.stringify({ name: a.rawKey.repeat(3) }), 'application/json', 400],
    [JSON.stringify({ name: b.rawKey }), 'text/plain', 415],
    [JSON.stringify({ name: b.rawKey.repeat(400) }), 'application/json', 413],
  ] as const) {
    const res = await call({
      method: 'POST',
      path: '/v1/api-keys',
      headers: as(a.rawKey, { 'Content-Type': contentType }),
      body,
    });
    expect(res.status).toBe(status);
  }
  expect((await call({ method: 'PUT', path: '/v1/api-keys', headers: as(a.rawKey) })).status).toBe(
    405,
  );

  if (options.cap !== undefined) {
    const listed = await call({ path: '/v1/api-keys', headers: as(bootstrapKey) });
    const held = (listed.json as { data: unknown[] }).data.length;
    for (let i = held; i < options.cap; i++) await create(bootstrapKey, `filler ${i}`);
    const over = await call({
      method: 'POST',
      path: '/v1/api-keys',
      headers: as(bootstrapKey),
      body: { name: 'one too many' },
    });
    expect(over.status).toBe(409);
  }

  if (options.outage) {
    options.outage.set(true);
    try {
      expect((await call({ path: GUARDED_PATH, headers: as(c.rawKey) })).status).toBe(503);
      expect((await call({ path: '/v1/api-keys', headers: as(a.rawKey) })).status).toBe(503);
      const during = await call({
        method: 'POST',
        path: '/v1/api-keys',
        headers: as(a.rawKey),
        body: { name: 'refused by the store' },
      });
      expect(during.status).toBe(503);
    } finally {
      options.outage.set(false);
    }
  }

  // Revocation, including a key revoking itself.
  expect(
    (await call({ method: 'DELETE', path: `/v1/api-keys/${b.id}`, headers: as(a.rawKey) })).status,
  ).toBe(200);
  expect((await call({ path: GUARDED_PATH, headers: as(b.rawKey) })).status).toBe(401);
  expect(
    (await call({ method: 'DELETE', path: `/v1/api-keys/${a.id}`, headers: as(a.rawKey) })).status,
  ).toBe(200);
  expect((await call({ path: GUARDED_PATH, headers: as(a.rawKey) })).status).toBe(401);
  expect((await call({ path: '/v1/api-keys', headers: as(c.rawKey) })).status).toBe(200);
  return keys;
}

/**
 * Records everything this process prints while `work` runs: stdout and stderr writes and
 * console calls (kept out of the test output, which they would only clutter).
 */
async function capturingOutput<T>(evidence: Evidence[], work: () => Promise<T>): Promise<T> {
  const streams = { stdout: process.stdout, stderr: process.stderr } as const;
  const originalWrites = {
    stdout: process.stdout.write,
    stderr: process.stderr.write,
  };
  for (const name of ['stdout', 'stderr'] as const) {
    const original = originalWrites[name];
    streams[name].write = ((chunk: unknown, ...rest: unknown[]) => {
      evidence.push({ source: `${name} write`, text: String(chunk) });
      return original.call(streams[name], chunk as string, ...(rest as []));
    }) as typeof process.stdout.write;
  }
  const methods = ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const;
  const originalConsole = Object.fromEntries(methods.map((m) => [m, console[m]]));
  for (const method of methods) {
    console[method] = (...args: unknown[]) => {
      evidence.push({ source: `console.${method}`, text: format(...args) });
    };
  }
  try {
    return await work();
  } finally {
    process.stdout.write = originalWrites.stdout;
    process.stderr.write = originalWrites.stderr;
    for (const method of methods) console[method] = originalConsole[method] as Console['log'];
  }
}

interface InProcessStore {
  store: KeyStore;
  bus: InvalidationBus;
  /** Every message on the bus, as it went over the wire. */
  busMessages(): string[];
  /** Every row or key-value the store holds, one evidence item each. */
  dump(): Promise<Evidence[]>;
  close(): Promise<void>;
}

function rowsAsEvidence(label: string, rows: unknown[]): Evidence[] {
  return rows.map((row, i) => ({ source: `store ${label} row ${i}`, text: JSON.stringify(row) }));
}

async function redisAsEvidence(client: Redis, pattern: string): Promise<Evidence[]> {
  return (await redisEntries(client, pattern)).map(([key, value]) => ({
    source: `store key ${key}`,
    text: `${key} ${value}`,
  }));
}

const inProcessStores: Array<[string, boolean, () => Promise<InProcessStore>]> = [
  [
    'memory',
    true,
    async () => {
      const store = memoryStore();
      const bus = memoryBus();
      const messages: string[] = [];
      await bus.subscribe((event) => messages.push(JSON.stringify(event)));
      return {
        store,
        bus,
        busMessages: () => messages,
        dump: async () => rowsAsEvidence('memory', store.snapshot()),
        close: async () => {},
      };
    },
  ],
  [
    'PGlite',
    true,
    async () => {
      const pglite = await startPglite();
      const db = new Kysely({ dialect: new PGliteDialect(pglite) });
      await migrate(db);
      const messages: string[] = [];
      const channel = 'keyward_hygiene';
      await pglite.listen(channel, (payload) => messages.push(payload));
      return {
        store: kyselyStore(db),
        bus: postgresBus({ db, connection: pglite, channel, onError: reportBusError }),
        busMessages: () => messages,
        dump: async () =>
          rowsAsEvidence('PGlite', (await sql`select * from keyward_api_keys`.execute(db)).rows),
        close: async () => {
          await db.destroy();
          if (!pglite.closed) await pglite.close();
        },
      };
    },
  ],
  [
    'Postgres',
    postgres,
    async () => {
      const table = `keyward_hygiene_${randomUUID().slice(0, 8)}`;
      const channel = table;
      const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
      const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
      await migrate(db, { table });
      const busClient = new pg.Client({ connectionString: DATABASE_URL });
      const spy = new pg.Client({ connectionString: DATABASE_URL });
      await Promise.all([busClient.connect(), spy.connect()]);
      const messages: string[] = [];
      spy.on('notification', (message) => messages.push(message.payload ?? ''));
      await spy.query(`LISTEN "${channel}"`);
      return {
        store: kyselyStore(db, { table }),
        bus: postgresBus({ db, connection: busClient, channel, onError: reportBusError }),
        busMessages: () => messages,
        dump: async () =>
          rowsAsEvidence(
            'Postgres',
            (await sql`select * from ${sql.table(table)}`.execute(db)).rows,
          ),
        close: async () => {
          await Promise.all([busClient.end(), spy.end()]);
          await sql`drop table if exists ${sql.table(table)}`.execute(db);
          await db.destroy();
        },
      };
    },
  ],
  [
    'Redis',
    redis,
    async () => {
      const namespace = `kwhygiene-${randomUUID().slice(0, 8)}`;
      const channel = `${namespace}:invalidation`;
      const client = new Redis(REDIS_URL);
      const subscriber = client.duplicate();
      const spy = client.duplicate();
      const messages: string[] = [];
      spy.on('message', (_channel: string, message: string) => messages.push(message));
      await spy.subscribe(channel);
      return {
        store: redisStore(client, { namespace }),
        bus: redisBus({ publisher: client, subscriber, channel, onError: reportBusError }),
        busMessages: () => messages,
        dump: () => redisAsEvidence(client, `${namespace}:*`),
        close: async () => {
          const left = await client.keys(`${namespace}:*`);
          if (left.length > 0) await client.del(...left);
          subscriber.disconnect();
          spy.disconnect();
          await client.quit();
        },
      };
    },
  ],
];

/** A bus failure is not what this file tests, but it must not go unnoticed either. */
const busErrors: unknown[] = [];
function reportBusError(error: unknown): void {
  busErrors.push(error);
}
afterAll(() => {
  expect(busErrors).toEqual([]);
});

describe('secret hygiene in process: a raw key is in its create response and nowhere else', () => {
  for (const [name, reachable, open] of inProcessStores) {
    it.skipIf(!reachable)(`on ${name}, with both adapters`, async () => {
      const evidence: Evidence[] = [];
      const target = await open();
      try {
        const keys = await capturingOutput(evidence, () => runBothAdapters(target, evidence));
        // The errors really went through the hooks and the logs: the search is not vacuous.
        const sources = new Set(evidence.map((e) => e.source));
        expect(sources).toContain('onError payload');
        expect(sources).toContain('onInvalidKey payload');
        expect(sources).toContain('console.error');
        expect(target.busMessages().length).toBeGreaterThanOrEqual(4);
        evidence.push(
          ...target.busMessages().map((text) => ({ source: 'bus message', text })),
          ...(await target.dump()),
        );
        expect(evidence.some((e) => e.source.startsWith('store'))).toBe(true);
        expectOnlyInCreateResponses(evidence, keys);
      } finally {
        await target.close();
      }
    });
  }
});

/** The flow through each adapter in turn, on one store, each with a service of its own
 * whose hooks log as a host's would. */
async function runBothAdapters(target: InProcessStore, evidence: Evidence[]): Promise<FlowKeys> {
  const keys: FlowKeys = { created: [], presented: [] };
  for (const adapter of ['express', 'fastify'] as const) {
    const store = faultyStore(target.store);
    const service = createKeyService({
      store,
      bus: target.bus,
      maxKeysPerOwner: CAP,
      argon2: CHEAP_ARGON2,
      lastUsedFlushIntervalMs: 50,
      onError: (error) => {
        evidence.push({
          source: 'onError payload',
          text: inspect(error, { depth: Number.POSITIVE_INFINITY, showHidden: true }),
        });
        console.error('[keyward] error', error);
      },
      onInvalidKey: (event) => {
        evidence.push({ source: 'onInvalidKey payload', text: inspect(event) });
        console.warn('[keyward] refused', event);
      },
    });
    await service.ready();
    const bootstrap = await service.create(`acct_${adapter}_${randomUUID()}`, 'bootstrap');
    keys.created.push({ rawKey: bootstrap.rawKey, createdIn: null });
    const server = await startServer[adapter]({ service, guardedPath: GUARDED_PATH });
    try {
      const flowKeys = await runFlow(server.url, bootstrap.rawKey, evidence, {
        cap: CAP,
        outage: {
          set: (failing) => {
            store.failing = failing;
          },
        },
      });
      keys.created.push(...flowKeys.created);
      keys.presented.push(...flowKeys.presented);
      await service.flushLastUsed();
    } finally {
      await server.close();
      await service.close();
    }
  }
  return keys;
}

const dataDirs: string[] = [];
afterAll(async () => {
  await Promise.all(dataDirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface ExampleStore {
  env(): Promise<Record<string, string>>;
  /** What the store holds once the example stopped. */
  dump(env: Record<string, string>, account: string): Promise<Evidence[]>;
  /** Listens to the example's invalidation bus while it runs. */
  spyOnBus?(): Promise<{ messages: string[]; stop(): Promise<void> }>;
}

// One run per example app, each on a store that persists what it holds (where a leak would
// stay) and, for Redis, with a bus to listen to. Every store's own code is covered in
// process above; the examples add their own output, which depends on the app, not the store.
const exampleStores: Array<[string, 'express' | 'fastify', boolean, ExampleStore]> = [
  [
    'pglite',
    'fastify',
    true,
    {
      async env() {
        const dir = await mkdtemp(join(tmpdir(), 'keyward-hygiene-'));
        dataDirs.push(dir);
        // An empty cluster made beforehand: the example's own initdb takes 5 to 30 s here.
        await (await startPglite(dir)).close();
        return { KEYWARD_DATA_DIR: dir };
      },
      async dump(env) {
        const pglite = await PGlite.create(env.KEYWARD_DATA_DIR);
        try {
          return rowsAsEvidence(
            'PGlite',
            (await pglite.query('select * from keyward_api_keys')).rows,
          );
        } finally {
          await pglite.close();
        }
      },
    },
  ],
  [
    'redis',
    'express',
    redis,
    {
      env: async () => ({ REDIS_URL }),
      async dump() {
        const client = new Redis(REDIS_URL);
        try {
          return await redisAsEvidence(client, 'keyward:*');
        } finally {
          await client.quit();
        }
      },
      async spyOnBus() {
        const client = new Redis(REDIS_URL);
        const messages: string[] = [];
        client.on('message', (_channel: string, message: string) => messages.push(message));
        await client.subscribe('keyward:invalidation');
        return { messages, stop: async () => void (await client.quit()) };
      },
    },
  ],
];

describe.concurrent('secret hygiene in the examples: output, responses, bus and store', () => {
  for (const [store, framework, reachable, setup] of exampleStores) {
    it.skipIf(!reachable)(
      `examples/${framework} on KEYWARD_STORE=${store}`,
      { timeout: 60_000 },
      async () => {
        const account = `hygiene-${randomUUID().slice(0, 8)}`;
        const env = { KEYWARD_STORE: store, DEMO_ACCOUNTS: account, ...(await setup.env()) };
        const bus = await setup.spyOnBus?.();
        const evidence: Evidence[] = [];
        const app = await startExample(framework, env);
        const bootstrap = app.bootstrap.get(account);
        let keys: FlowKeys = { created: [], presented: [] };
        try {
          if (!bootstrap)
            throw new Error(`no bootstrap key in the output:\n${maskKeys(app.output())}`);
          keys = await runFlow(app.url, bootstrap, evidence);
          keys.created.push({ rawKey: bootstrap, createdIn: null });
        } finally {
          // Its exit code is test/examples.test.ts's concern; here only what it printed counts.
          await app.stop();
          await bus?.stop();
        }
        const lines = app.output().split('\n');
        if (!bootstrap) return;
        // The start-up text is the bootstrap key's create response: it shows the key on its
        // account's line, and once more in the paste-ready `export KEY=` line of the curls.
        // No other line may hold it, nor any other key.
        const shown = lines.filter((line) => line.includes(secretOf(bootstrap)));
        expect(shown.map(maskKeys)).toEqual(
          [`${account} ${bootstrap}`, `export KEY=${bootstrap}`].map(maskKeys),
        );
        const log = lines
          .filter((line) => !shown.includes(line))
          .map((text, i) => ({ source: `example output line ${i}`, text }));
        expect(log.some((e) => e.text.includes('[keyward] refused'))).toBe(true);
        evidence.push(...log, ...(await setup.dump(env, account)));
        if (bus) {
          expect(bus.messages.length).toBeGreaterThanOrEqual(2);
          evidence.push(...bus.messages.map((text) => ({ source: 'bus message', text })));
        }
        expectOnlyInCreateResponses(evidence, keys);
      },
    );
  }
});
