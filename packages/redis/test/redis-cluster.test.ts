import { randomUUID } from 'node:crypto';
import { describeStoreConformance, makeStoredKey, serviceUnavailable } from '@keyward/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteNamespace, dumpNamespace, namespaceKeys } from '../../../test/support/redis-dump.js';
import { redisStore } from '../src/redis-store.js';
import { startRedisCluster, type TestRedisCluster } from './test-cluster.js';
import { describeOwnerIdEscaping } from './test-escaping.js';
import { describeLifecycleLayout } from './test-lifecycle.js';
import { describeStreamBus } from './test-stream-bus.js';
import {
  countCommands,
  describeBusDelivery,
  describeBusResync,
  describeContention,
  describeNoOrphans,
  onFreshStore,
  randomNamespace,
} from './test-support.js';

const cluster: TestRedisCluster | null = await startRedisCluster().catch((error: unknown) => {
  serviceUnavailable('Redis Cluster (redis-server on spare loopback ports)', error);
  return null;
});
afterAll(async () => {
  await cluster?.stop();
});

if (!cluster) {
  it.skip('a local Redis Cluster could not be started', () => {});
} else {
  const namespace = randomNamespace();
  const main = await cluster.client();

  describeStoreConformance('redis (cluster)', {
    createStore: () => redisStore(main, { namespace }),
    createPeers: async (count) =>
      Promise.all(
        Array.from({ length: count }, async () =>
          redisStore(await cluster.client(), { namespace }),
        ),
      ),
    dumpContents: () => dumpNamespace(main, namespace),
    teardown: () => deleteNamespace(main, namespace),
  });

  describeNoOrphans('redis (cluster)', () => cluster.client());
  describeContention('redis (cluster)', () => cluster.client());
  describeBusDelivery('redis (cluster)', () => cluster.client());
  describeStreamBus('redis (cluster)', () => cluster.client());
  describeOwnerIdEscaping('redis (cluster)', () => cluster.client());
  describeLifecycleLayout('redis (cluster)', () => cluster.client());

  // The cluster is this file's own: every subscriber connection on it may go.
  describeBusResync(
    'redis (cluster)',
    () => cluster.client(),
    async () => async () => {
      const killed = await Promise.all(
        main.nodes('master').map((node) => node.call('CLIENT', 'KILL', 'TYPE', 'pubsub')),
      );
      expect(killed.reduce((a, b) => Number(a) + Number(b), 0)).toBeGreaterThanOrEqual(1);
    },
  );

  describe('redis (cluster): layout', () => {
    it('check() rejects a plain Redis client on a cluster node: the store needs a Cluster client', async () => {
      const plain = new Redis({ host: '127.0.0.1', port: cluster.ports[0] });
      try {
        await expect(redisStore(plain).check()).rejects.toMatchObject({
          name: 'StoreMisconfiguredError',
          message: expect.stringMatching(/cluster mode; pass an ioredis Cluster client/),
        });
        await expect(redisStore(main).check()).resolves.toBeUndefined();
      } finally {
        plain.disconnect();
      }
    });

    it("keeps each owner's keys in one slot, owners spread over several slots", async () => {
      await onFreshStore(
        async () => main,
        async ({ namespace: ns, store }) => {
          const owners = Array.from({ length: 12 }, () => `owner_${randomUUID()}`);
          for (const ownerId of owners) {
            for (let i = 0; i < 2; i++) {
              await store.insert(await makeStoredKey({ ownerId }), { maxKeysPerOwner: 5 });
            }
          }
          const slotOf = async (key: string) => Number(await main.cluster('KEYSLOT', key));
          const ownerSlots = new Set<number>();
          for (const ownerId of owners) {
            const slots = new Set(
              await Promise.all(
                (await namespaceKeys(main, ns))
                  .filter((key) => key.startsWith(`${ns}:{o:${ownerId}}`))
                  .map(slotOf),
              ),
            );
            expect(slots.size).toBe(1);
            for (const slot of slots) ownerSlots.add(slot);
            expect(await store.listByOwner(ownerId)).toHaveLength(2);
          }
          expect(ownerSlots.size).toBeGreaterThan(1);
        },
      );
    });

    it('recordLastUsed() resolves ids, then sends one script call per owner', async () => {
      await onFreshStore(
        async () => main,
        async ({ store }) => {
          const [ownerA, ownerB] = [`owner_${randomUUID()}`, `owner_${randomUUID()}`];
          const keys = await Promise.all([
            makeStoredKey({ ownerId: ownerA }),
            makeStoredKey({ ownerId: ownerA }),
            makeStoredKey({ ownerId: ownerB }),
          ]);
          for (const key of keys) await store.insert(key, { maxKeysPerOwner: 5 });
          const at = new Date('2025-06-01T12:00:00.321Z');
          await store.recordLastUsed(keys.map((k) => ({ id: k.id, lastUsedAt: at })));
          const sent = await countCommands(main, () =>
            store.recordLastUsed([
              ...keys.map((k) => ({ id: k.id, lastUsedAt: new Date(at.getTime() + 1) })),
              { id: 'key_unknown0000000000000', lastUsedAt: at },
            ]),
          );
          expect(sent.filter((name) => name === 'get')).toHaveLength(4);
          expect(sent.filter((name) => name === 'evalsha')).toHaveLength(2);
          for (const key of keys) {
            expect((await store.findByLookup(key.lookup))?.lastUsedAt).toEqual(
              new Date(at.getTime() + 1),
            );
          }
        },
      );
    });
  });
}
