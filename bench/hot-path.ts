/**
 * `pnpm bench:hot-path`: the warm guard's own cost, without HTTP, in one process: ns per
 * cached `verify()` and per `authenticate()` of the HTTP layer (what both adapters call),
 * next to the `ideal` guard's work (SHA-256 of the header, a Map lookup). Quieter than the
 * loopback bench on a shared machine, so it shows what a hot-path change buys.
 */
import { hash } from 'node:crypto';
import { createHttpHandler, createKeyService, logBus, memoryStore } from '@keyward/core';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { median } from './stats.js';

const ROUNDS = 7;
const CALLS = Number(process.env.BENCH_HOT_PATH_CALLS ?? 200_000);

const service = createKeyService({
  store: memoryStore(),
  argon2: CHEAP_ARGON2,
});
const http = createHttpHandler(service);
const { rawKey } = await service.create('acct_bench', 'hot path');
if (!(await service.verify(rawKey)).ok) throw new Error('the bench key does not verify');
const headers = { 'x-api-key': rawKey, host: '127.0.0.1', accept: '*/*' };

// The same with a log bus whose view is current: each hit also checks the view's age
// against maxStalenessMs (docs/design.md, "Invalidation log").
const quietLog = logBus(
  {
    append: async () => {},
    head: async () => '0',
    read: async (position) => ({ entries: [], position, lost: false, more: false }),
    wait: (_position, waitMs) =>
      new Promise((resolve) => setTimeout(() => resolve(undefined), waitMs).unref()),
  },
  { name: 'bench', onError: console.error },
);
// A tight loop of cache hits never yields to timers, so the heartbeat cannot run here: a
// bound the loop cannot reach keeps the view current; the comparison is made all the same.
const logged = createKeyService({
  store: memoryStore(),
  argon2: CHEAP_ARGON2,
  bus: quietLog,
  maxStalenessMs: 600_000,
});
const loggedHttp = createHttpHandler(logged);
const loggedKey = (await logged.create('acct_bench', 'hot path, log bus')).rawKey;
await logged.ready();
if (!(await logged.verify(loggedKey)).ok) throw new Error('the bench key does not verify');
const loggedHeaders = { ...headers, 'x-api-key': loggedKey };
const ideal = new Map([[hash('sha256', rawKey, 'base64'), { id: 'key_ideal' }]]);

async function nsPerCall(work: () => unknown): Promise<number> {
  const rounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const started = process.hrtime.bigint();
    // Awaited one at a time, as a request is: the promise layers are part of the cost.
    for (let i = 0; i < CALLS; i++) await work();
    rounds.push(Number(process.hrtime.bigint() - started) / CALLS);
  }
  return median(rounds.slice(1)); // the first round warms the JIT
}

const results = {
  ideal: await nsPerCall(() => ideal.get(hash('sha256', headers['x-api-key'], 'base64'))),
  verify: await nsPerCall(() => service.verify(rawKey)),
  authenticate: await nsPerCall(() => http.authenticate(headers)),
  'verify (log)': await nsPerCall(() => logged.verify(loggedKey)),
  'auth (log)': await nsPerCall(() => loggedHttp.authenticate(loggedHeaders)),
};
if (logged.verifyCached(loggedKey) === undefined) throw new Error('the log bus went stale');
await service.close();
await logged.close();
for (const [name, ns] of Object.entries(results)) {
  console.log(
    `${name.padEnd(13)} ${ns.toFixed(0).padStart(6)} ns per call (median of ${ROUNDS - 1} rounds of ${CALLS})`,
  );
}
