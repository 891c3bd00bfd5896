import { randomUUID } from 'node:crypto';
import type { StoredKey } from '@keyward/core';
import { makeStoredKey } from '@keyward/testing';
import type { Command } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { deleteNamespace, namespaceKeys } from '../../../test/support/redis-dump.js';
import { escapePart, formatIndexEntry, keyLayout } from '../src/key-layout.js';
import { redisStore } from '../src/redis-store.js';
import { deleteTreeRecords, type RedisClient } from '../src/scripts.js';
import { onFreshStore, randomNamespace, v1Record } from './test-support.js';

/**
 * Test fixture: writes a key exactly as the store did before expiry, scopes, metadata and
 * createdBy existed: the record with only the fields of that version, the id in the
 * owner's zset, both index entries committed (no TTL).
 */
export async function writeV1Key(
  client: RedisClient,
  namespace: string,
  key: StoredKey,
): Promise<void> {
  const layout = keyLayout(namespace);
  const [owner, id] = [escapePart(key.ownerId), escapePart(key.id)];
  const value = formatIndexEntry(owner, id, `n0nce${randomUUID().slice(0, 8)}`);
  await client.hset(layout.record(owner, id), {
    ...v1Record(key),
    ...(key.lastUsedAt && { lastUsedAt: String(key.lastUsedAt.getTime()) }),
  });
  await client.zadd(layout.ownerIds(owner), key.createdAt.getTime(), key.id);
  await client.set(layout.idIndex(key.id), value);
  await client.set(layout.lookupIndex(key.lookup), value);
}

/** What a v1 record reads as: never expiring, every scope, no metadata, no creator. */
const asV1 = (key: StoredKey): StoredKey => ({
  ...key,
  expiresAt: null,
  scopes: ['*'],
  metadata: {},
  createdBy: null,
});

/** Records written before the lifecycle fields, used in place by the v2 store; and
 * deleteTree against an insert that lands between its read and its script. */
export function describeLifecycleLayout(label: string, connect: () => Promise<RedisClient>): void {
  describe(`${label}: records written before the lifecycle fields`, () => {
    it('are found and listed with no expiry, every scope, empty metadata and no creator', async () => {
      await onFreshStore(connect, async ({ client, namespace, store }) => {
        const ownerId = `owner ${randomUUID()}\t}`;
        const used = asV1(
          await makeStoredKey({ ownerId, lastUsedAt: new Date('2025-01-02T03:04:05.678Z') }),
        );
        const unused = asV1(await makeStoredKey({ ownerId, createdAt: new Date(1_000) }));
        for (const key of [used, unused]) await writeV1Key(client, namespace, key);
        expect(await store.findByLookup(used.lookup)).toEqual(used);
        expect(await store.listByOwner(ownerId)).toEqual([used, unused]);
        const at = new Date('2025-06-01T00:00:00.001Z');
        await store.recordLastUsed([{ id: unused.id, lastUsedAt: at }]);
        expect(await store.findByLookup(unused.lookup)).toEqual({ ...unused, lastUsedAt: at });
      });
    });

    it('update() sets name, metadata and a first expiry, and never extends it', async () => {
      await onFreshStore(connect, async ({ client, namespace, store }) => {
        const key = asV1(await makeStoredKey());
        await writeV1Key(client, namespace, key);
        const sooner = new Date('2030-01-01T00:00:00.000Z');
        const changed = { name: 'v2', metadata: { z: 1, a: [true] }, expiresAt: sooner };
        expect(await store.update(key.ownerId, key.id, changed)).toEqual({ ...key, ...changed });
        const later = new Date('2031-01-01T00:00:00.000Z');
        expect(await store.update(key.ownerId, key.id, { expiresAt: later })).toEqual({
          ...key,
          ...changed,
        });
        // The host's key order survives, not just the values.
        const found = await store.findByLookup(key.lookup);
        expect(Object.keys(found?.metadata ?? {})).toEqual(['z', 'a']);
        expect(found?.scopes).toEqual(['*']);
      });
    });

    it('roll() counts them against the cap and shortens a v1 key that never expired', async () => {
      await onFreshStore(connect, async ({ client, namespace, store }) => {
        const old = asV1(await makeStoredKey());
        const sibling = asV1(await makeStoredKey({ ownerId: old.ownerId }));
        for (const key of [old, sibling]) await writeV1Key(client, namespace, key);
        const next = await makeStoredKey({ ownerId: old.ownerId, createdBy: old.id });
        const now = new Date();
        const previousExpiresAt = new Date(now.getTime() + 3_600_000);
        const options = { previousExpiresAt, now, maxKeysPerOwner: 2 };
        expect(await store.roll(old.ownerId, old.id, next, options)).toEqual({
          ok: false,
          reason: 'limit_reached',
        });
        expect(await store.findByLookup(old.lookup)).toEqual(old);
        expect(
          await store.roll(old.ownerId, old.id, next, { ...options, maxKeysPerOwner: 3 }),
        ).toEqual({ ok: true, previous: { ...old, expiresAt: previousExpiresAt } });
        expect(await store.findByLookup(next.lookup)).toEqual(next);
        expect(await store.findByLookup(old.lookup)).toEqual({
          ...old,
          expiresAt: previousExpiresAt,
        });
      });
    });

    it('deleteTree() takes a v1 root with its v2 children; delete() takes a v1 key; nothing is left', async () => {
      await onFreshStore(connect, async ({ client, namespace, store }) => {
        const ownerId = `owner_${randomUUID()}`;
        const root = asV1(await makeStoredKey({ ownerId }));
        const other = asV1(await makeStoredKey({ ownerId }));
        for (const key of [root, other]) await writeV1Key(client, namespace, key);
        const child = await makeStoredKey({ ownerId, createdBy: root.id });
        const grandchild = await makeStoredKey({ ownerId, createdBy: child.id });
        for (const key of [child, grandchild]) await store.insert(key, { maxKeysPerOwner: 10 });

        expect(await store.deleteTree(ownerId, root.id)).toEqual([
          root.id,
          child.id,
          grandchild.id,
        ]);
        for (const key of [root, child, grandchild]) {
          expect(await store.findByLookup(key.lookup)).toBeNull();
        }
        expect(await store.listByOwner(ownerId)).toEqual([other]);
        expect(await store.delete(ownerId, other.id)).toBe(true);
        expect(await namespaceKeys(client, namespace)).toEqual([]);
      });
    });
  });

  describe(`${label}: deleteTree() racing an insert`, () => {
    it('a child inserted between the read of the ids and the script goes with the tree', async () => {
      const [client, peerClient] = await Promise.all([connect(), connect()]);
      const namespace = randomNamespace();
      const store = redisStore(client, { namespace });
      const peer = redisStore(peerClient, { namespace });
      const target = client as unknown as {
        sendCommand(command: Command, ...rest: unknown[]): unknown;
      };
      const original = target.sendCommand;
      try {
        const ownerId = `owner_${randomUUID()}`;
        const root = await makeStoredKey({ ownerId });
        const child = await makeStoredKey({ ownerId, createdBy: root.id });
        const late = await makeStoredKey({ ownerId, createdBy: child.id });
        for (const key of [root, child]) await store.insert(key, { maxKeysPerOwner: 10 });
        // The first script call waits for another instance's insert of a grandchild: the
        // ids read just before no longer hold every key of the owner.
        let scripts = 0;
        target.sendCommand = function (this: unknown, command: Command, ...rest: unknown[]) {
          const isTree = command.name === 'evalsha' && command.args[0] === deleteTreeRecords.sha;
          if (!isTree || scripts++ > 0) return original.call(this, command, ...rest);
          void peer.insert(late, { maxKeysPerOwner: 10 }).then(() => {
            // Not returned: the caller handles the command's own promise (a NOSCRIPT).
            original.call(this, command, ...rest);
          });
          return command.promise;
        };
        const deleted = await store.deleteTree(ownerId, root.id);
        target.sendCommand = original;
        expect(scripts).toBe(2);
        expect(deleted).toEqual([root.id, child.id, late.id]);
        expect(await store.findByLookup(late.lookup)).toBeNull();
        expect(await store.listByOwner(ownerId)).toEqual([]);
        expect(await namespaceKeys(client, namespace)).toEqual([]);
      } finally {
        target.sendCommand = original;
        await deleteNamespace(client, namespace);
      }
    });
  });
}
