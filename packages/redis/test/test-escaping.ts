import { createKeyService, type StoredKey } from '@keyward/core';
import { CHEAP_ARGON2, makeStoredKey } from '@keyward/testing';
import { describe, expect, it } from 'vitest';
import { deleteNamespace, namespaceKeys } from '../../../test/support/redis-dump.js';
import { migrateRedisStore } from '../src/migrate.js';
import { redisStore } from '../src/redis-store.js';
import type { RedisClient } from '../src/scripts.js';
import { onFreshStore, randomNamespace, v1Record } from './test-support.js';

/** Owner ids with each kind of whitespace the key names once held raw. */
export const WHITESPACE_OWNERS = ['a\tb', 'a\nb', 'a b', 'a\rb', 'a\u00a0b', 'a\u2028b'];

/**
 * Test fixture: writes a key exactly as the first redisStore layout did, which escaped only
 * `%`, `{`, `}` and the space, and left a tab or newline raw in key names and index values.
 */
export async function writeFirstLayout(
  client: RedisClient,
  namespace: string,
  key: StoredKey,
): Promise<void> {
  const escapeOld = (part: string) =>
    part.replace(/[%{} ]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const [owner, id] = [escapeOld(key.ownerId), escapeOld(key.id)];
  const value = `${owner} ${id} n0nce-${id}`;
  await client.hset(`${namespace}:{o:${owner}}:k:${id}`, v1Record(key));
  await client.zadd(`${namespace}:{o:${owner}}:ids`, key.createdAt.getTime(), key.id);
  await client.set(`${namespace}:i:${id}`, value);
  await client.set(`${namespace}:l:${escapeOld(key.lookup)}`, value);
}

/** Owner ids holding whitespace: lastUsedAt is written, and keys of the first layout migrate. */
export function describeOwnerIdEscaping(label: string, connect: () => Promise<RedisClient>): void {
  describe(`${label}: owner ids holding whitespace`, () => {
    it('get lastUsedAt written after a verify and a flush, for every kind of whitespace', async () => {
      const client = await connect();
      const namespace = randomNamespace();
      const service = createKeyService({
        store: redisStore(client, { namespace }),
        argon2: CHEAP_ARGON2,
        lastUsedFlushIntervalMs: 60_000,
      });
      try {
        for (const ownerId of WHITESPACE_OWNERS) {
          const created = await service.create(ownerId, 'k');
          expect(await service.verify(created.rawKey)).toMatchObject({ ok: true });
        }
        await service.flushLastUsed();
        for (const ownerId of WHITESPACE_OWNERS) {
          const [listed] = await service.list(ownerId);
          expect(listed?.lastUsedAt, JSON.stringify(ownerId)).toBeInstanceOf(Date);
        }
        // No key name holds raw whitespace any more.
        expect((await namespaceKeys(client, namespace)).filter((k) => /\s/.test(k))).toEqual([]);
      } finally {
        await service.close();
        await deleteNamespace(client, namespace);
      }
    });

    it('keys written by the first layout migrate once, then are found, listed, updated, used and deleted', async () => {
      await onFreshStore(connect, async ({ client, namespace, store }) => {
        const old = await Promise.all(
          WHITESPACE_OWNERS.map((ownerId) => makeStoredKey({ ownerId })),
        );
        const plain = await makeStoredKey({ ownerId: 'a} {b %7D' });
        for (const key of [...old, plain]) await writeFirstLayout(client, namespace, key);
        const plainLayout = await namespaceKeys(client, namespace);

        const result = await migrateRedisStore(client, { namespace });
        // The space and the braces were escaped the same way before: that owner stays put.
        expect(result).toEqual({ records: 5, entries: 10 });
        expect((await namespaceKeys(client, namespace)).filter((k) => /\s/.test(k))).toEqual([]);
        expect(await migrateRedisStore(client, { namespace })).toEqual({ records: 0, entries: 0 });
        expect(await namespaceKeys(client, namespace)).toHaveLength(plainLayout.length);

        const at = new Date('2025-06-01T12:00:00.5Z');
        await store.recordLastUsed([...old, plain].map(({ id }) => ({ id, lastUsedAt: at })));
        for (const key of [...old, plain]) {
          expect(await store.findByLookup(key.lookup)).toEqual({ ...key, lastUsedAt: at });
          expect(await store.listByOwner(key.ownerId)).toEqual([{ ...key, lastUsedAt: at }]);
          expect(await store.update(key.ownerId, key.id, { name: 'renamed' })).toMatchObject({
            name: 'renamed',
          });
          // The cap counts the migrated key: the owner's id list moved with it.
          expect(
            await store.insert(await makeStoredKey({ ownerId: key.ownerId }), {
              maxKeysPerOwner: 1,
            }),
          ).toEqual({
            ok: false,
            reason: 'limit_reached',
          });
          expect(await store.delete(key.ownerId, key.id)).toBe(true);
          expect(await store.findByLookup(key.lookup)).toBeNull();
        }
        expect(await namespaceKeys(client, namespace)).toEqual([]);
      });
    });

    it('a migration interrupted half way finishes on the next run', async () => {
      await onFreshStore(connect, async ({ client, namespace, store }) => {
        const key = await makeStoredKey({ ownerId: 'tab\there' });
        await writeFirstLayout(client, namespace, key);
        // What a run stopped after the copy leaves: the record at both names, entries old.
        await migrateRedisStore(client, { namespace });
        await writeFirstLayout(client, namespace, key);
        await client.zadd(`${namespace}:{o:tab\there}:ids`, 1, 'key_ghost000000000000000');

        expect(await migrateRedisStore(client, { namespace })).toEqual({ records: 1, entries: 2 });
        expect(await store.listByOwner(key.ownerId)).toEqual([key]);
        expect(await store.findByLookup(key.lookup)).toEqual(key);
        expect(await store.delete(key.ownerId, key.id)).toBe(true);
        expect(await namespaceKeys(client, namespace)).toEqual([]);
      });
    });
  });
}
