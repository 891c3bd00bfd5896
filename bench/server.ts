/**
 * A host app under test, in a process of its own so that the load generator never shares
 * its event loop. Routes: `/hello` (no guard), `/ideal` (the cheapest conceivable guard:
 * SHA-256 of the header looked up in a Map) and `/guarded` (keyward's guard), all answering
 * the same small JSON. The parent drives setup and reads measurements over IPC.
 */
import { hash } from 'node:crypto';
import { subscribe } from 'node:diagnostics_channel';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { serve } from '@hono/node-server';
import {
  ARGON2_CHANNEL,
  type Argon2Event,
  type AuthenticatedKey,
  createKeyService,
  hashKey,
  type KeyStore,
  memoryStore,
  randomBase62,
  verifyKeyHash,
} from '@keyward/core';
import { keyward as expressKeyward } from '@keyward/express';
import { keyward as fastifyKeyward, keywardFrameworkErrors } from '@keyward/fastify';
import { keyward as honoKeyward } from '@keyward/hono';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import type { ProbeReport, Reply, Request, ServerConfig } from './protocol.js';

const config = JSON.parse(process.env.BENCH_SERVER_CONFIG ?? '') as ServerConfig;
const body = { hello: 'world' };
const idealKeys = new Map<string, AuthenticatedKey>(
  config.idealDigests.map((digest, i) => [
    digest,
    {
      id: `key_ideal${i}`,
      ownerId: 'bench',
      name: 'ideal',
      keyPrefix: 'rep_xxxx',
      keySuffix: 'xxxxxx',
      createdAt: new Date(0),
      expiresAt: null,
      scopes: ['*'],
      metadata: {},
      rateLimit: null,
      credits: null,
      leakedAt: null,
      leakSource: null,
    },
  ]),
);
const idealLookup = (header: unknown): AuthenticatedKey | undefined =>
  typeof header === 'string' ? idealKeys.get(hash('sha256', header, 'base64')) : undefined;

let storeErrors = 0;
const opened = await openStore(config);
const { closeStore } = opened;
// Lease calls counted, for the store calls per 1000 requests the bench reports.
let leaseCalls = 0;
const store: KeyStore = {
  ...opened.store,
  claimWindow: (...args) => {
    leaseCalls++;
    return opened.store.claimWindow(...args);
  },
  returnWindow: (...args) => {
    leaseCalls++;
    return opened.store.returnWindow(...args);
  },
  claimCredits: (...args) => {
    leaseCalls++;
    return opened.store.claimCredits(...args);
  },
  returnCredits: (...args) => {
    leaseCalls++;
    return opened.store.returnCredits(...args);
  },
};
const service = createKeyService({
  store,
  onError(error) {
    // A flood can fail thousands of store calls: say it a few times, count the rest.
    if (++storeErrors <= 5) console.error('[bench server] error:', (error as Error)?.message);
  },
});

/** `/hello-fields`: `/hello` with the two header fields a limited key's answers carry,
 * set the framework's usual way and no guard: what sending them costs by itself. */
const LIMIT_FIELDS = {
  'RateLimit-Policy': '"window";q=1000000;w=60',
  RateLimit: '"window";r=999000;t=42',
};

const starters = { fastify: startFastify, express: startExpress, hono: startHono };
const { url, closeServer } = await starters[config.framework]();

async function startFastify() {
  const app = Fastify({ frameworkErrors: keywardFrameworkErrors });
  await app.register(fastifyKeyward, { service });
  app.get('/hello', async () => body);
  app.get('/hello-fields', async (_request, reply) => {
    reply.headers(LIMIT_FIELDS);
    return body;
  });
  app.get('/guarded', { config: { apiKey: true } }, async (request) => {
    if (!request.apiKey) throw new Error('guard let a request through without a key');
    return body;
  });
  app.get(
    '/ideal',
    {
      onRequest(request, reply, done) {
        const key = idealLookup(request.headers['x-api-key']);
        if (!key) {
          reply.code(401).send({ error: 'invalid_api_key' });
          return;
        }
        request.apiKey = key;
        done();
      },
    },
    async () => body,
  );
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: address, closeServer: () => app.close() };
}

async function startExpress() {
  const app = express();
  const auth = expressKeyward({ service });
  app.use(auth.router);
  app.get('/hello', (_req, res) => {
    res.json(body);
  });
  app.get('/hello-fields', (_req, res) => {
    res.set(LIMIT_FIELDS).json(body);
  });
  app.get('/guarded', auth.requireApiKey(), (req, res) => {
    if (!req.apiKey) throw new Error('guard let a request through without a key');
    res.json(body);
  });
  app.get(
    '/ideal',
    (req, res, next) => {
      const key = idealLookup(req.headers['x-api-key']);
      if (!key) {
        res.status(401).json({ error: 'invalid_api_key' });
        return;
      }
      req.apiKey = key;
      next();
    },
    (_req, res) => {
      res.json(body);
    },
  );
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    closeServer: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function startHono() {
  const app = new Hono();
  const auth = honoKeyward({ service });
  app.use(auth.routes);
  app.get('/hello', (c) => c.json(body));
  app.get('/hello-fields', (c) => c.json(body, 200, LIMIT_FIELDS));
  app.get('/guarded', auth.requireApiKey(), (c) => {
    if (!c.get('apiKey')) throw new Error('guard let a request through without a key');
    return c.json(body);
  });
  app.get(
    '/ideal',
    async (c, next) => {
      const key = idealLookup(c.req.header('x-api-key'));
      if (!key) return c.json({ error: 'invalid_api_key' }, 401);
      c.set('apiKey', key);
      await next();
    },
    (c) => c.json(body),
  );
  const server = serve({
    fetch: app.fetch,
    port: 0,
    hostname: '127.0.0.1',
    autoCleanupIncoming: false,
  }) as Server;
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    closeServer: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function openStore(
  c: ServerConfig,
): Promise<{ store: KeyStore; closeStore(): Promise<void> }> {
  switch (c.store) {
    case 'memory':
      return { store: memoryStore(), closeStore: async () => {} };
    case 'postgres': {
      const [{ default: pg }, { Kysely, PostgresDialect }, { kyselyStore }] = await Promise.all([
        import('pg'),
        import('kysely'),
        import('@keyward/kysely'),
      ]);
      const pool = new pg.Pool({ connectionString: c.databaseUrl, max: 10 });
      const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
      return { store: kyselyStore(db, { table: c.table }), closeStore: () => db.destroy() };
    }
    case 'redis': {
      const [{ Redis }, { redisStore }] = await Promise.all([
        import('ioredis'),
        import('@keyward/redis'),
      ]);
      const client = new Redis(c.redisUrl ?? '');
      return {
        store: redisStore(client, { namespace: c.namespace }),
        closeStore: async () => {
          await client.quit();
        },
      };
    }
  }
}

// Resolution 5 ms: fine enough to see a 50 ms stall, cheap enough not to cost throughput.
const lag = monitorEventLoopDelay({ resolution: 5 });
lag.enable();
let probe = { cpu: process.cpuUsage(), at: performance.now() };

/** The argon2id verifications the service ran for requests since the last
 * `argon2-in-requests` call, in ms, as keyward announces them on its argon2 channel: what
 * argon2 cost inside those very requests. The reference verifications below are left out
 * (the parent runs them only between requests). */
let inRequests: number[] = [];
let timingReference = false;
subscribe(ARGON2_CHANNEL, (message) => {
  const event = message as Argon2Event;
  if (event.operation === 'verify' && !timingReference) inRequests.push(event.durationMs);
});

/** The reference's key and hash, made on the first call and kept: what a verify costs does
 * not depend on the key. */
let reference: Promise<{ rawKey: string; phc: string }> | undefined;

/** Times (ms) of `samples` argon2id verifications in a row, with the library and the
 * parameters the service's own verifications use. */
async function argon2Times(samples: number): Promise<number[]> {
  reference ??= (async () => {
    const rawKey = `rep_${randomBase62(50)}`;
    return { rawKey, phc: await hashKey(rawKey, service.options.argon2) };
  })();
  const { rawKey, phc } = await reference;
  const times: number[] = [];
  timingReference = true;
  try {
    for (let i = 0; i < samples; i++) {
      const started = performance.now();
      if (!(await verifyKeyHash(phc, rawKey))) throw new Error('argon2 verify failed');
      times.push(performance.now() - started);
    }
  } finally {
    timingReference = false;
  }
  return times;
}

async function answer(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'seed':
      for (const record of request.records) {
        await store.insert(record, { maxKeysPerOwner: 1_000_000 });
      }
      return request.records.length;
    case 'argon2-times':
      return argon2Times(request.samples);
    case 'argon2-in-requests': {
      const times = inRequests;
      inRequests = [];
      return times;
    }
    case 'probe-start':
      lag.reset();
      leaseCalls = 0;
      probe = { cpu: process.cpuUsage(), at: performance.now() };
      return null;
    case 'probe-stop': {
      const cpu = process.cpuUsage(probe.cpu);
      const report: ProbeReport = {
        lagP50Ms: lag.percentile(50) / 1e6,
        lagP99Ms: lag.percentile(99) / 1e6,
        lagMaxMs: lag.max / 1e6,
        cpuShare: (cpu.user + cpu.system) / 1000 / (performance.now() - probe.at),
        cpuMicros: cpu.user + cpu.system,
        stats: service.stats(),
        leaseCalls,
      };
      return report;
    }
    case 'close':
      await closeServer();
      await service.close();
      await closeStore();
      lag.disable();
      setImmediate(() => process.disconnect());
      return storeErrors;
  }
}

const send = (message: Reply) => process.send?.(message);
process.on('message', (message: Request) => {
  answer(message).then(
    (value) => send({ type: 'reply', id: message.id, ok: true, value }),
    (error: unknown) =>
      send({ type: 'reply', id: message.id, ok: false, error: String((error as Error)?.stack) }),
  );
});
// The parent owns this process: if it goes away, so do we.
process.on('disconnect', () => process.exit(0));
send({ type: 'listening', url });
