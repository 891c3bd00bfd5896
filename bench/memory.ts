/**
 * `pnpm bench:memory` (also run at the end of `pnpm bench`): the heap that 100,000 cached
 * keys add to a service. Needs `--expose-gc`. argon2 runs with the cheapest parameters, since
 * its cost is not what is measured here.
 *
 * The store hands out fresh strings on every read, as pg and ioredis do, so the cache owns
 * every string it holds; an in-memory store would share them and make the cache look
 * smaller than it is in production.
 */
import { createKeyService, type KeyStore, memoryStore, type StoredKey } from '@keyward/core';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { makeKeys } from './keys.js';

const KEYS = Number(process.env.BENCH_MEMORY_KEYS ?? 100_000);
/** The budget: 64 MiB per 100,000 keys. */
const LIMIT_MIB = (64 * KEYS) / 100_000;
/** Cheaper still than the tests' settings: 100,000 hashes at 1 MiB would take minutes. */
const NEAR_FREE_ARGON2 = { ...CHEAP_ARGON2, memoryCost: 8 };
/** Verifications in flight at once: under the default argon2 queue bound (64). */
const BATCH = 48;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('bench/memory.ts needs node --expose-gc');

const inner = memoryStore();
const driverLike: KeyStore = {
  ...inner,
  async findByLookup(lookup) {
    const row = await inner.findByLookup(lookup);
    return row && fresh(row);
  },
  // What the store keeps is not the cache's memory: lastUsedAt writes are dropped.
  async recordLastUsed() {},
};

// Many owners and realistic names, as in production: both are held by the cache.
const keys = await makeKeys(KEYS, NEAR_FREE_ARGON2, {
  owners: 5000,
  name: (i) => `Production server ${i}`,
});
for (const { record } of keys) {
  await inner.insert(record, { maxKeysPerOwner: Number.MAX_SAFE_INTEGER });
}
const rawKeys = keys.map((key) => key.rawKey);

const before = settledMemory();
const service = createKeyService({
  store: driverLike,
  argon2: NEAR_FREE_ARGON2,
  cache: { max: KEYS, ttlMs: 3_600_000 },
  lastUsedFlushIntervalMs: 3_600_000,
});
for (let start = 0; start < KEYS; start += BATCH) {
  const results = await Promise.all(rawKeys.slice(start, start + BATCH).map(service.verify));
  if (!results.every((r) => r.ok)) throw new Error('a bench key did not verify');
}
await service.flushLastUsed();
const { cachedKeys } = service.stats();
if (cachedKeys !== KEYS) throw new Error(`expected ${KEYS} cached keys, found ${cachedKeys}`);
const after = settledMemory();
// Keeps the service (and so its caches) reachable until after the measurement.
await service.close();

const mib = (bytes: number) => bytes / 2 ** 20;
const heapDelta = after.heapUsed - before.heapUsed;
const bufferDelta = after.arrayBuffers - before.arrayBuffers;
const total = heapDelta + bufferDelta;
const ok = mib(total) <= LIMIT_MIB;
console.log(
  `${KEYS} cached keys: heap +${mib(heapDelta).toFixed(1)} MiB, array buffers +${mib(bufferDelta).toFixed(1)} MiB; ` +
    `${(total / KEYS).toFixed(0)} bytes per key; ${ok ? 'ok  ' : 'FAIL'} (limit ${LIMIT_MIB.toFixed(1)} MiB)`,
);
if (process.argv.includes('--json')) {
  console.log(
    JSON.stringify({ ok, keys: KEYS, heapDeltaBytes: heapDelta, bufferDeltaBytes: bufferDelta }),
  );
}

function settledMemory(): NodeJS.MemoryUsage {
  for (let i = 0; i < 3; i++) gc?.();
  return process.memoryUsage();
}

/** A copy with strings of its own, as a database driver returns. */
function fresh(row: StoredKey): StoredKey {
  const copy = (s: string) => Buffer.from(s, 'utf8').toString('utf8');
  return {
    id: copy(row.id),
    ownerId: copy(row.ownerId),
    name: copy(row.name),
    lookup: copy(row.lookup),
    hash: copy(row.hash),
    keyPrefix: copy(row.keyPrefix),
    keySuffix: copy(row.keySuffix),
    createdAt: new Date(row.createdAt),
    lastUsedAt: row.lastUsedAt && new Date(row.lastUsedAt),
    expiresAt: row.expiresAt && new Date(row.expiresAt),
    scopes: row.scopes.map(copy),
    metadata: structuredClone(row.metadata),
    createdBy: row.createdBy && copy(row.createdBy),
    rateLimit: row.rateLimit,
    credits: row.credits,
    leakedAt: row.leakedAt && new Date(row.leakedAt),
    leakSource: row.leakSource && copy(row.leakSource),
  };
}
