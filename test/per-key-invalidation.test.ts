import { randomUUID } from 'node:crypto';
import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises';
import { createKeyService, type KeyService, type KeyStore } from '@keyward/core';
import { redisBus, redisStore } from '@keyward/redis';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { REDIS_URL, redisReachable } from './support/services.js';

/**
 * A tenant renaming its own key as fast as it can, on one of two instances linked by a
 * Redis bus and sharing a Redis store: another tenant's warm key must stay cached on both,
 * costing each instance at most one store read and one argon2 run per cache TTL.
 */

const redis = await redisReachable();

const CACHE_TTL_MS = 500;
const DURATION_MS = 3_000;

const namespace = `kwperkey-${randomUUID().slice(0, 8)}`;
const channel = `${namespace}:invalidation`;
const connections: Redis[] = [];
const services: KeyService[] = [];

/** What the buses report: nothing is expected. */
const busErrors: unknown[] = [];
afterAll(async () => {
  await Promise.all(services.map((s) => s.close().catch(() => {})));
  const [first] = connections;
  if (first) {
    const left = await first.keys(`${namespace}:*`);
    if (left.length > 0) await first.del(...left);
  }
  for (const c of connections) c.disconnect();
  expect(busErrors).toEqual([]);
});

/** One instance: its own connections, the shared namespace and channel, and a count of
 * its store reads per lookup part (each is followed by an argon2 run). */
function instance() {
  const client = new Redis(REDIS_URL);
  const subscriber = client.duplicate();
  connections.push(client, subscriber);
  const inner = redisStore(client, { namespace });
  const reads = new Map<string, number>();
  const store: KeyStore = {
    ...inner,
    findByLookup: (lookup) => {
      reads.set(lookup, (reads.get(lookup) ?? 0) + 1);
      return inner.findByLookup(lookup);
    },
  };
  const service = createKeyService({
    store,
    bus: redisBus({
      publisher: client,
      subscriber,
      channel,
      onError: (error) => busErrors.push(error),
    }),
    argon2: CHEAP_ARGON2,
    cache: { ttlMs: CACHE_TTL_MS },
    // The cache is what is measured here, not the rename bound.
    maxRenamesPerMinute: 1_000_000,
  });
  services.push(service);
  return { service, reads };
}

describe.skipIf(!redis)('per-key invalidation on Redis, two instances', () => {
  it(`with one tenant renaming its key as fast as it can, another tenant's warm key costs each instance at most one argon2 run per cache TTL`, async () => {
    const one = instance();
    const two = instance();
    await Promise.all([one.service.ready(), two.service.ready()]);
    const noisy = await one.service.create(`noisy-${namespace}`, 'noisy');
    const quiet = await one.service.create(`quiet-${namespace}`, 'quiet');
    const quietLookup = quiet.rawKey.slice(4, 16);

    let done = false;
    let renames = 0;
    const renaming = (async () => {
      while (!done) {
        await one.service.rename(`noisy-${namespace}`, noisy.id, `n${renames++}`);
      }
    })();
    const verifications = [0, 0];
    const using = [one, two].map(async ({ service }, i) => {
      while (!done) {
        expect((await service.verify(quiet.rawKey)).ok).toBe(true);
        verifications[i] = (verifications[i] ?? 0) + 1;
        await yieldToLoop();
      }
    });
    await sleep(DURATION_MS);
    done = true;
    await Promise.all([renaming, ...using]);

    const bound = Math.ceil(DURATION_MS / CACHE_TTL_MS) + 1;
    const argon2Runs = [one, two].map(({ reads }) => reads.get(quietLookup) ?? 0);
    console.info(
      `${renames} renames in ${DURATION_MS} ms; quiet key verified ${verifications.join(' / ')} times, argon2 runs for it per instance: ${argon2Runs.join(' / ')} (bound ${bound})`,
    );
    expect(renames).toBeGreaterThan(50);
    for (const runs of argon2Runs) expect(runs).toBeLessThanOrEqual(bound);
  });
});
