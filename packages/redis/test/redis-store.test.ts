import { randomUUID } from 'node:crypto';
import { createKeyService } from '@keyward/core';
import { describeStoreConformance, makeStoredKey } from '@keyward/testing';
import { type Command, Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteNamespace, dumpNamespace, namespaceKeys } from '../../../test/support/redis-dump.js';
import { REDIS_URL, redisReachable } from '../../../test/support/services.js';
import { migrateRedisStore } from '../src/migrate.js';
import { redisStore } from '../src/redis-store.js';
import * as scripts from '../src/scripts.js';
import { describeOwnerIdEscaping, writeFirstLayout } from './test-escaping.js';
import { describeLifecycleLayout } from './test-lifecycle.js';
import { describeStreamBus } from './test-stream-bus.js';
import {
  countCommands,
  countSocketWrites,
  describeBusDelivery,
  describeBusResync,
  describeContention,
  describeNoOrphans,
  onFreshStore,
  randomNamespace,
} from './test-support.js';

const reachable = await redisReachable();
const clients: Redis[] = [];
const connect = async (options: { keyPrefix?: string } = {}) => {
  const client = new Redis(REDIS_URL, options);
  clients.push(client);
  return client;
};
afterAll(async () => {
  await Promise.all(clients.map((client) => client.quit()));
});

if (!reachable) {
  it.skip(`Redis at ${REDIS_URL} is unreachable`, () => {});
} else {
  const namespace = randomNamespace();
  const main = await connect();

  describeStoreConformance('redis (single server)', {
    createStore: () => redisStore(main, { namespace }),
    createPeers: async (count) =>
      Promise.all(
        Array.from({ length: count }, async () => redisStore(await connect(), { namespace })),
      ),
    dumpContents: () => dumpNamespace(main, namespace),
    teardown: () => deleteNamespace(main, namespace),
  });

  describeNoOrphans('redis (single server)', () => connect());
  describeContention('redis (single server)', () => connect());
  describeBusDelivery('redis (single server)', () => connect());
  describeStreamBus('redis (single server)', () => connect());
  describeOwnerIdEscaping('redis (single server)', () => connect());
  describeLifecycleLayout('redis (single server)', () => connect());

  // Only the subscriber's connection is killed: the server is shared.
  describeBusResync(
    'redis (single server)',
    () => connect(),
    async (subscriber) => {
      const id = await subscriber.client('ID');
      return async () => {
        expect(await main.client('KILL', 'ID', String(id))).toBe(1);
      };
    },
  );

  describe('redis (single server): round trips and options', () => {
    it('recordLastUsed() takes one round trip per batch, and none for an empty batch', async () => {
      await onFreshStore(connect, async ({ client, store }) => {
        const owner = `owner_${randomUUID()}`;
        const keys = await Promise.all([1, 2, 3].map(() => makeStoredKey({ ownerId: owner })));
        const other = await makeStoredKey();
        for (const key of [...keys, other]) await store.insert(key, { maxKeysPerOwner: 10 });
        const at = (offset: number) => new Date(Date.parse('2025-06-01T00:00:00Z') + offset);
        // The first call may have to load the script into the server's cache.
        await store.recordLastUsed([{ id: other.id, lastUsedAt: at(0) }]);

        const batch = [
          ...keys.map((key, i) => ({ id: key.id, lastUsedAt: at(10 + i) })),
          { id: other.id, lastUsedAt: at(5) },
          { id: other.id, lastUsedAt: at(50) },
          { id: 'key_unknown0000000000000', lastUsedAt: at(60) },
        ];
        let sent: string[] = [];
        const writes = await countSocketWrites(client, async () => {
          sent = await countCommands(client, () => store.recordLastUsed(batch));
        });
        expect(sent).toEqual(['evalsha']);
        expect(writes).toBe(1);
        expect(await countCommands(client, () => store.recordLastUsed([]))).toEqual([]);

        // A large batch goes as several script calls, still in one write: one round trip.
        const large = [
          ...batch,
          ...Array.from({ length: 1200 }, (_, i) => ({
            id: `key_unknown${String(i).padStart(13, '0')}`,
            lastUsedAt: at(70),
          })),
        ];
        const largeWrites = await countSocketWrites(client, async () => {
          sent = await countCommands(client, () => store.recordLastUsed(large));
        });
        expect(sent).toEqual(['evalsha', 'evalsha', 'evalsha']);
        expect(largeWrites).toBe(1);

        const listed = await store.listByOwner(owner);
        expect(listed.map((k) => k.lastUsedAt?.getTime()).sort()).toEqual(
          [10, 11, 12].map((i) => at(i).getTime()),
        );
        expect((await store.findByLookup(other.lookup))?.lastUsedAt).toEqual(at(50));
      });
    });

    it('works through a client with an ioredis keyPrefix', async () => {
      const keyPrefix = `kwtest-prefix-${randomUUID().slice(0, 8)}:`;
      const client = await connect({ keyPrefix });
      const plain = await connect();
      const store = redisStore(client, { namespace: 'app' });
      try {
        const key = await makeStoredKey();
        await store.insert(key, { maxKeysPerOwner: 10 });
        const at = new Date('2025-06-01T12:00:00.789Z');
        await store.recordLastUsed([{ id: key.id, lastUsedAt: at }]);
        expect(await store.findByLookup(key.lookup)).toEqual({ ...key, lastUsedAt: at });
        expect((await namespaceKeys(plain, `${keyPrefix}app`)).length).toBeGreaterThan(0);
        expect(await store.delete(key.ownerId, key.id)).toBe(true);
        expect(await namespaceKeys(plain, `${keyPrefix}app`)).toEqual([]);
      } finally {
        await deleteNamespace(plain, `${keyPrefix}app`);
      }
    });

    it('migrateRedisStore() works through a client with an ioredis keyPrefix', async () => {
      const keyPrefix = `kwtest-prefix-${randomUUID().slice(0, 8)}:`;
      const client = await connect({ keyPrefix });
      const plain = await connect();
      const store = redisStore(client, { namespace: 'app' });
      try {
        const key = await makeStoredKey({ ownerId: 'line\nbreak' });
        await writeFirstLayout(client, 'app', key);
        expect(await migrateRedisStore(client, { namespace: 'app' })).toEqual({
          records: 1,
          entries: 2,
        });
        expect(await store.listByOwner(key.ownerId)).toEqual([key]);
        expect(await store.delete(key.ownerId, key.id)).toBe(true);
        expect(await namespaceKeys(plain, `${keyPrefix}app`)).toEqual([]);
      } finally {
        await deleteNamespace(plain, `${keyPrefix}app`);
      }
    });

    it('rejects a namespace that could break hash tags or SCAN patterns', () => {
      expect(() => redisStore(clients[0] as Redis, { namespace: 'a{b}' })).toThrow(/namespace/);
      expect(() => redisStore(clients[0] as Redis, { namespace: 'a*' })).toThrow(/namespace/);
      expect(() => redisStore(clients[0] as Redis, { namespace: '' })).toThrow(/namespace/);
    });

    it('an owner id holding braces and spaces stays in its own keys', async () => {
      await onFreshStore(
        async () => main,
        async ({ store }) => {
          const tricky = await makeStoredKey({ ownerId: 'a} {b %7D' });
          const plain = await makeStoredKey({ ownerId: 'a%7D {b } ' });
          await store.insert(tricky, { maxKeysPerOwner: 1 });
          expect(await store.insert(plain, { maxKeysPerOwner: 1 })).toEqual({ ok: true });
          expect(await store.listByOwner(tricky.ownerId)).toEqual([tricky]);
          expect(await store.findByLookup(plain.lookup)).toEqual(plain);
          await store.recordLastUsed([{ id: tricky.id, lastUsedAt: new Date(5) }]);
          expect((await store.findByLookup(tricky.lookup))?.lastUsedAt).toEqual(new Date(5));
        },
      );
    });

    it('a dangling lookup entry reads as null and does not block a later insert', async () => {
      await onFreshStore(
        async () => main,
        async ({ namespace: ns, store }) => {
          const key = await makeStoredKey();
          await store.insert(key, { maxKeysPerOwner: 10 });
          // What a crash between delete's steps leaves: the record gone, the index kept.
          const lookupIndex = `${ns}:l:${key.lookup}`;
          const idIndex = `${ns}:i:${key.id}`;
          const [entry, idEntry] = await Promise.all([main.get(lookupIndex), main.get(idIndex)]);
          await store.delete(key.ownerId, key.id);
          await main.set(lookupIndex, entry ?? '');
          await main.set(idIndex, idEntry ?? '');
          expect(await store.findByLookup(key.lookup)).toBeNull();
          await store.recordLastUsed([{ id: key.id, lastUsedAt: new Date() }]);
          expect(await store.listByOwner(key.ownerId)).toEqual([]);

          // The same id reused with a new lookup: the old entry must not resolve to it.
          const reused = await makeStoredKey({ id: key.id, ownerId: key.ownerId });
          expect(await store.insert(reused, { maxKeysPerOwner: 10 })).toEqual({ ok: true });
          expect(await store.findByLookup(key.lookup)).toBeNull();
          // And the same lookup again, under another owner: the entry is taken over.
          const again = await makeStoredKey({ lookup: key.lookup });
          expect(await store.insert(again, { maxKeysPerOwner: 10 })).toEqual({ ok: true });
          expect(await store.findByLookup(key.lookup)).toEqual(again);
          expect(await store.findByLookup(reused.lookup)).toEqual(reused);
        },
      );
    });

    it('a committed insert leaves permanent entries; a crashed one only expiring claims', async () => {
      await onFreshStore(
        async () => main,
        async ({ namespace: ns, store }) => {
          const key = await makeStoredKey();
          await store.insert(key, { maxKeysPerOwner: 10 });
          expect(await main.pttl(`${ns}:l:${key.lookup}`)).toBe(-1);
          expect(await main.pttl(`${ns}:i:${key.id}`)).toBe(-1);

          // What an insert that died after claiming its lookup part leaves behind.
          const crashed = await makeStoredKey();
          await main.set(
            `${ns}:l:${crashed.lookup}`,
            `${crashed.ownerId} ${crashed.id} n0nce`,
            'PX',
            300,
          );
          const next = await makeStoredKey({ lookup: crashed.lookup });
          await expect(store.insert(next, { maxKeysPerOwner: 10 })).rejects.toMatchObject({
            name: 'KeyCollisionError',
            field: 'lookup',
          });
          expect(await store.findByLookup(crashed.lookup)).toBeNull();
          await new Promise((resolve) => setTimeout(resolve, 350));
          expect(await store.insert(next, { maxKeysPerOwner: 10 })).toEqual({ ok: true });
          expect(await store.findByLookup(next.lookup)).toEqual(next);
        },
      );
    });

    it('an insert whose claim expired before its commit rolls back and throws', async () => {
      await onFreshStore(connect, async ({ client, namespace: ns, store }) => {
        const key = await makeStoredKey();
        const lookupEntry = `${ns}:l:${key.lookup}`;
        const restore = expireClaimBeforeCommit(client, main, lookupEntry);
        await expect(store.insert(key, { maxKeysPerOwner: 10 })).rejects.toThrow(/rolled back/);
        restore();
        expect(await store.listByOwner(key.ownerId)).toEqual([]);
        expect(await namespaceKeys(client, ns)).toEqual([]);
      });
    });

    it('a roll whose claim expired before its commit rolls back: no new key, the old expiry as it was', async () => {
      await onFreshStore(connect, async ({ client, namespace: ns, store }) => {
        const old = await makeStoredKey();
        await store.insert(old, { maxKeysPerOwner: 10 });
        const next = await makeStoredKey({ ownerId: old.ownerId });
        const lookupEntry = `${ns}:l:${next.lookup}`;
        const restore = expireClaimBeforeCommit(client, main, lookupEntry);
        const now = new Date();
        await expect(
          store.roll(old.ownerId, old.id, next, {
            previousExpiresAt: new Date(now.getTime() + 60_000),
            now,
            maxKeysPerOwner: 10,
          }),
        ).rejects.toThrow(/rolled back/);
        restore();
        expect(await store.listByOwner(old.ownerId)).toEqual([old]);
        expect(await store.findByLookup(old.lookup)).toEqual(old);
        expect(await store.findByLookup(next.lookup)).toBeNull();
      });
    });

    it('scripts run twice (a call re-sent after a reconnect) give the same answers', async () => {
      const client = await connect();
      const ns = randomNamespace();
      const store = redisStore(client, { namespace: ns });
      // Cached first, so that each call really is an EVALSHA that runs twice.
      for (const script of Object.values(scripts)) {
        if (typeof script === 'object' && 'lua' in script) await client.script('LOAD', script.lua);
      }
      // Every script call reaches the server twice; the caller sees the second reply.
      const target = client as unknown as {
        sendCommand(command: Command, ...rest: unknown[]): unknown;
      };
      const original = target.sendCommand;
      let duplicating = false;
      target.sendCommand = function (this: unknown, command: Command, ...rest: unknown[]) {
        if (duplicating || command.name !== 'evalsha') return original.call(this, command, ...rest);
        duplicating = true;
        const [sha = '', count = '0', ...args] = command.args.map(String);
        const first = client.evalsha(sha, count, ...args);
        duplicating = false;
        void first.catch(() => undefined).then(() => original.call(this, command, ...rest));
        return command.promise;
      };
      try {
        const owner = `owner_${randomUUID()}`;
        const [a, b] = await Promise.all([1, 2].map(() => makeStoredKey({ ownerId: owner })));
        if (!a || !b) throw new Error('unreachable');
        const cap = { maxKeysPerOwner: 1 };
        expect(await store.insert(a, cap)).toEqual({ ok: true });
        expect(await store.insert(b, cap)).toEqual({ ok: false, reason: 'limit_reached' });
        expect(await store.update(owner, a.id, { name: 'twice' })).toEqual({ ...a, name: 'twice' });
        const soon = new Date('2030-01-01T00:00:00.000Z');
        expect(await store.update(owner, a.id, { expiresAt: soon })).toEqual({
          ...a,
          name: 'twice',
          expiresAt: soon,
        });
        const next = await makeStoredKey({ ownerId: owner, createdBy: a.id });
        const sooner = new Date('2029-01-01T00:00:00.000Z');
        const roll = (maxKeysPerOwner: number) =>
          store.roll(owner, a.id, next, {
            previousExpiresAt: sooner,
            now: new Date(),
            maxKeysPerOwner,
          });
        expect(await roll(1)).toEqual({ ok: false, reason: 'limit_reached' });
        const rolled = { ...a, name: 'twice', expiresAt: sooner };
        expect(await roll(2)).toEqual({ ok: true, previous: rolled });
        expect(await store.findByLookup(next.lookup)).toEqual(next);
        // Like delete below: the second run finds nothing left, and the answer says so.
        expect(await store.deleteTree(owner, next.id)).toEqual([]);
        expect(await store.findByLookup(next.lookup)).toBeNull();
        const at = new Date('2025-06-01T12:00:00.001Z');
        await store.recordLastUsed([{ id: a.id, lastUsedAt: at }]);
        expect(await store.findByLookup(a.lookup)).toEqual({ ...rolled, lastUsedAt: at });
        expect(await store.findByLookup(b.lookup)).toBeNull();
        // The one exception: the second run of a delete finds nothing left to delete.
        expect(await store.delete(owner, a.id)).toBe(false);
        target.sendCommand = original;
        expect(await store.listByOwner(owner)).toEqual([]);
        expect(await store.findByLookup(a.lookup)).toBeNull();
      } finally {
        target.sendCommand = original;
        await deleteNamespace(client, ns);
      }
    });

    it('an unreachable server makes every method throw, never answer null', async () => {
      const down = new Redis({
        host: '127.0.0.1',
        port: 1,
        lazyConnect: true,
        retryStrategy: () => null,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
      });
      down.on('error', () => {});
      const store = redisStore(down);
      const key = await makeStoredKey();
      await expect(store.insert(key, { maxKeysPerOwner: 1 })).rejects.toThrow();
      await expect(store.findByLookup(key.lookup)).rejects.toThrow();
      await expect(store.listByOwner(key.ownerId)).rejects.toThrow();
      await expect(store.update(key.ownerId, key.id, { name: 'x' })).rejects.toThrow();
      await expect(store.deleteTree(key.ownerId, key.id)).rejects.toThrow();
      const now = new Date();
      await expect(
        store.roll(key.ownerId, key.id, await makeStoredKey({ ownerId: key.ownerId }), {
          previousExpiresAt: now,
          now,
          maxKeysPerOwner: 1,
        }),
      ).rejects.toThrow();
      await expect(store.delete(key.ownerId, key.id)).rejects.toThrow();
      await expect(
        store.recordLastUsed([{ id: key.id, lastUsedAt: new Date() }]),
      ).rejects.toThrow();
      await expect(store.check()).rejects.toThrow();
      await expect(createKeyService({ store }).ready()).rejects.toMatchObject({
        name: 'StoreUnavailableError',
      });
      down.disconnect();
    });
  });
}

/**
 * Stands in for a stall longer than a claim's TTL: the claim on `lookupEntry` vanishes
 * (deleted through `other`) just before `client`'s commit of it reaches the server. Undoes
 * itself after that one commit; the returned function undoes it if none came.
 */
function expireClaimBeforeCommit(client: Redis, other: Redis, lookupEntry: string): () => void {
  const target = client as unknown as { sendCommand(command: Command): unknown };
  const original = target.sendCommand;
  target.sendCommand = function (this: unknown, command: Command) {
    const isCommit =
      command.name === 'evalsha' &&
      command.args[0] === scripts.commitEntry.sha &&
      String(command.args[2]) === lookupEntry;
    if (!isCommit) return original.call(this, command);
    target.sendCommand = original;
    void other.del(lookupEntry).then(() => original.call(this, command));
    return command.promise;
  };
  return () => {
    target.sendCommand = original;
  };
}
