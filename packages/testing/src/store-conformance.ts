import { randomUUID } from 'node:crypto';
import { generateKey, generateKeyId, hashKey, type KeyStore, type StoredKey } from '@keyward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHEAP_ARGON2 } from './cheap-argon2.js';

export interface StoreConformanceOptions {
  /** Builds the store under test. Called once per suite; tests use random owners and ids,
   * so the store may share a database with other suites. */
  createStore(): KeyStore | Promise<KeyStore>;
  /** Several stores over separate connections to the same data, for the concurrent cap
   * test. Without it, the concurrent inserts all go through the one store. */
  createPeers?(count: number): Promise<KeyStore[]>;
  /** Everything the store persisted (rows, keys and values), as text. Enables the test
   * that no raw key or secret part reaches the store. */
  dumpContents?(): Promise<string>;
  /** Releases what `createStore` and `createPeers` opened. */
  teardown?(): Promise<void>;
}

/** A record for a fresh random owner unless one is given. */
export async function makeStoredKey(overrides: Partial<StoredKey> = {}): Promise<StoredKey> {
  const generated = generateKey();
  return {
    id: generateKeyId(),
    ownerId: `owner_${randomUUID()}`,
    name: 'Production Server',
    lookup: generated.lookup,
    hash: await hashKey(generated.rawKey, CHEAP_ARGON2),
    keyPrefix: generated.keyPrefix,
    keySuffix: generated.keySuffix,
    createdAt: new Date(),
    lastUsedAt: null,
    expiresAt: null,
    scopes: ['*'],
    metadata: {},
    createdBy: null,
    rateLimit: null,
    credits: null,
    leakedAt: null,
    leakSource: null,
    ...overrides,
  };
}

const noCap = { maxKeysPerOwner: 1000 };

/**
 * The store contract (docs/design.md, "Store contract") as a vitest suite. Run it on any `KeyStore`:
 *
 * ```ts
 * describeStoreConformance('my store', { createStore: () => myStore(client) });
 * ```
 */
export function describeStoreConformance(name: string, options: StoreConformanceOptions): void {
  describe(`${name}: store conformance`, () => {
    let store: KeyStore;
    beforeAll(async () => {
      store = await options.createStore();
    });
    afterAll(async () => {
      await options.teardown?.();
    });
    const ctx = {
      get store() {
        return store;
      },
    };
    describeInsertAndFind(ctx);
    describeOwnerScope(ctx);
    describeListOrder(ctx);
    describeCap(ctx, options);
    describeLastUsed(ctx);
    describeLifecycle(ctx);
    describeLeases(ctx, options);
    describeLeakMark(ctx);
    describeReadiness(ctx);
    if (options.dumpContents) describeSecretHygiene(ctx, options.dumpContents);
  });
}

interface SuiteContext {
  readonly store: KeyStore;
}

export function describeInsertAndFind(ctx: SuiteContext): void {
  describe('insert and findByLookup', () => {
    it('findByLookup() returns every field as inserted, timestamps to the millisecond in UTC', async () => {
      const key = await makeStoredKey({
        name: 'Ünïcode 🔑 name',
        createdAt: new Date('2024-03-14T10:30:00.123Z'),
        lastUsedAt: null,
      });
      expect(await ctx.store.insert(key, noCap)).toEqual({ ok: true });
      const found = await ctx.store.findByLookup(key.lookup);
      expect(found).toEqual(key);
      expect(found?.createdAt.toISOString()).toBe('2024-03-14T10:30:00.123Z');
    });

    it('findByLookup() of an unknown lookup part returns null', async () => {
      const key = await makeStoredKey();
      expect(await ctx.store.findByLookup(key.lookup)).toBeNull();
    });

    it('insert() with an existing id throws and leaves the first key as it was', async () => {
      const first = await makeStoredKey();
      await ctx.store.insert(first, noCap);
      const second = await makeStoredKey({ id: first.id, name: 'intruder' });
      await expect(ctx.store.insert(second, noCap)).rejects.toMatchObject({
        name: 'KeyCollisionError',
      });
      expect(await ctx.store.findByLookup(first.lookup)).toEqual(first);
      expect(await ctx.store.findByLookup(second.lookup)).toBeNull();
    });

    it('insert() with an existing lookup part throws and leaves the first key as it was', async () => {
      const first = await makeStoredKey();
      await ctx.store.insert(first, noCap);
      const second = await makeStoredKey({ lookup: first.lookup, name: 'intruder' });
      await expect(ctx.store.insert(second, noCap)).rejects.toMatchObject({
        name: 'KeyCollisionError',
      });
      expect(await ctx.store.findByLookup(first.lookup)).toEqual(first);
      expect(await ctx.store.listByOwner(second.ownerId)).toEqual([]);
    });

    it('a 100-code-point name with astral characters survives the round trip', async () => {
      const name = '𝒜'.repeat(50) + 'é'.repeat(50);
      const key = await makeStoredKey({ name });
      await ctx.store.insert(key, noCap);
      expect((await ctx.store.findByLookup(key.lookup))?.name).toBe(name);
    });
  });
}

export function describeOwnerScope(ctx: SuiteContext): void {
  describe('owner scope, rename and delete', () => {
    it("listByOwner() returns only that owner's keys", async () => {
      const mine = await makeStoredKey();
      const theirs = await makeStoredKey();
      await ctx.store.insert(mine, noCap);
      await ctx.store.insert(theirs, noCap);
      expect((await ctx.store.listByOwner(mine.ownerId)).map((k) => k.id)).toEqual([mine.id]);
    });

    it('listByOwner() of an owner with no keys returns an empty array', async () => {
      expect(await ctx.store.listByOwner(`owner_${randomUUID()}`)).toEqual([]);
    });

    it('update() returns the renamed key and changes nothing else', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      const renamed = await ctx.store.update(key.ownerId, key.id, { name: 'Staging Server' });
      expect(renamed).toEqual({ ...key, name: 'Staging Server' });
      expect(await ctx.store.findByLookup(key.lookup)).toEqual({ ...key, name: 'Staging Server' });
    });

    it("update() on another owner's key returns null and leaves it unchanged", async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      expect(
        await ctx.store.update(`owner_${randomUUID()}`, key.id, { name: 'hijacked' }),
      ).toBeNull();
      expect((await ctx.store.findByLookup(key.lookup))?.name).toBe(key.name);
    });

    it('update() of an unknown id returns null', async () => {
      const key = await makeStoredKey();
      expect(await ctx.store.update(key.ownerId, key.id, { name: 'x' })).toBeNull();
    });

    it('delete() removes the key at once from findByLookup and listByOwner', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      expect(await ctx.store.delete(key.ownerId, key.id)).toBe(true);
      expect(await ctx.store.findByLookup(key.lookup)).toBeNull();
      expect(await ctx.store.listByOwner(key.ownerId)).toEqual([]);
    });

    it('delete() twice returns false the second time', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      await ctx.store.delete(key.ownerId, key.id);
      expect(await ctx.store.delete(key.ownerId, key.id)).toBe(false);
    });

    it("delete() on another owner's key returns false and the key keeps working", async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      expect(await ctx.store.delete(`owner_${randomUUID()}`, key.id)).toBe(false);
      expect(await ctx.store.findByLookup(key.lookup)).toEqual(key);
    });

    it('a deleted id and lookup part cannot be found again, and a new key can be inserted', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      await ctx.store.delete(key.ownerId, key.id);
      const next = await makeStoredKey({ ownerId: key.ownerId });
      await ctx.store.insert(next, noCap);
      expect((await ctx.store.listByOwner(key.ownerId)).map((k) => k.id)).toEqual([next.id]);
    });
  });
}

export function describeListOrder(ctx: SuiteContext): void {
  describe('list order', () => {
    it('listByOwner() returns newest first, then by id descending on equal createdAt', async () => {
      const ownerId = `owner_${randomUUID()}`;
      const t0 = Date.parse('2024-01-01T00:00:00.000Z');
      const keys = await Promise.all([
        makeStoredKey({ ownerId, id: 'key_a0000000000000000000', createdAt: new Date(t0 + 1) }),
        makeStoredKey({ ownerId, id: 'key_b0000000000000000000', createdAt: new Date(t0 + 1) }),
        makeStoredKey({ ownerId, id: 'key_c0000000000000000000', createdAt: new Date(t0) }),
        makeStoredKey({ ownerId, id: 'key_d0000000000000000000', createdAt: new Date(t0 + 5000) }),
      ]);
      // Unique ids per run: the store may be shared with other runs of this suite.
      const suffix = randomUUID().slice(0, 8);
      for (const key of keys) key.id = `${key.id}${suffix}`;
      for (const key of [keys[2], keys[0], keys[3], keys[1]]) {
        if (key) await ctx.store.insert(key, noCap);
      }
      const listed = (await ctx.store.listByOwner(ownerId)).map((k) => k.id.slice(0, 5));
      expect(listed).toEqual(['key_d', 'key_b', 'key_a', 'key_c']);
    });
  });
}

export function describeCap(
  ctx: SuiteContext,
  options: Pick<StoreConformanceOptions, 'createPeers'> = {},
): void {
  describe('per-owner cap', () => {
    it('insert() refuses the key past the cap and accepts it again after a delete', async () => {
      const ownerId = `owner_${randomUUID()}`;
      const cap = { maxKeysPerOwner: 3 };
      const keys = await Promise.all([1, 2, 3, 4].map(() => makeStoredKey({ ownerId })));
      for (const key of keys.slice(0, 3))
        expect(await ctx.store.insert(key, cap)).toEqual({ ok: true });
      const fourth = keys[3] as StoredKey;
      expect(await ctx.store.insert(fourth, cap)).toEqual({ ok: false, reason: 'limit_reached' });
      expect(await ctx.store.findByLookup(fourth.lookup)).toBeNull();
      const first = keys[0] as StoredKey;
      await ctx.store.delete(ownerId, first.id);
      expect(await ctx.store.insert(fourth, cap)).toEqual({ ok: true });
    });

    it("one owner's cap does not limit another owner", async () => {
      const cap = { maxKeysPerOwner: 1 };
      const a = await makeStoredKey();
      const b = await makeStoredKey();
      expect(await ctx.store.insert(a, cap)).toEqual({ ok: true });
      expect(await ctx.store.insert(b, cap)).toEqual({ ok: true });
    });

    it('50 concurrent inserts against a cap of 10 leave exactly 10 keys', async () => {
      const ownerId = `owner_${randomUUID()}`;
      const cap = { maxKeysPerOwner: 10 };
      const peers = options.createPeers ? await options.createPeers(5) : [ctx.store];
      const keys = await Promise.all(Array.from({ length: 50 }, () => makeStoredKey({ ownerId })));
      const results = await Promise.all(
        keys.map((key, i) => (peers[i % peers.length] as KeyStore).insert(key, cap)),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(10);
      expect(results.filter((r) => !r.ok)).toHaveLength(40);
      expect(await ctx.store.listByOwner(ownerId)).toHaveLength(10);
    });
  });
}

export function describeLastUsed(ctx: SuiteContext): void {
  describe('recordLastUsed', () => {
    it('sets lastUsedAt to the millisecond', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      const at = new Date('2025-06-01T12:00:00.456Z');
      await ctx.store.recordLastUsed([{ id: key.id, lastUsedAt: at }]);
      expect((await ctx.store.findByLookup(key.lookup))?.lastUsedAt).toEqual(at);
      expect((await ctx.store.listByOwner(key.ownerId))[0]?.lastUsedAt).toEqual(at);
    });

    it('never moves lastUsedAt back: an older time does not overwrite a newer one', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      const newer = new Date('2025-06-01T12:00:00.500Z');
      await ctx.store.recordLastUsed([{ id: key.id, lastUsedAt: newer }]);
      await ctx.store.recordLastUsed([
        { id: key.id, lastUsedAt: new Date('2025-06-01T12:00:00.499Z') },
      ]);
      expect((await ctx.store.findByLookup(key.lookup))?.lastUsedAt).toEqual(newer);
    });

    it('writes a batch of several keys, keeps the latest of duplicates, ignores unknown ids', async () => {
      const a = await makeStoredKey();
      const b = await makeStoredKey();
      await ctx.store.insert(a, noCap);
      await ctx.store.insert(b, noCap);
      const t = Date.parse('2025-06-01T12:00:00.000Z');
      await ctx.store.recordLastUsed([
        { id: a.id, lastUsedAt: new Date(t + 2) },
        { id: b.id, lastUsedAt: new Date(t + 3) },
        { id: a.id, lastUsedAt: new Date(t + 1) },
        { id: 'key_doesnotexist000000', lastUsedAt: new Date(t) },
      ]);
      expect((await ctx.store.findByLookup(a.lookup))?.lastUsedAt).toEqual(new Date(t + 2));
      expect((await ctx.store.findByLookup(b.lookup))?.lastUsedAt).toEqual(new Date(t + 3));
    });

    it('an empty batch is a no-op', async () => {
      await expect(ctx.store.recordLastUsed([])).resolves.toBeUndefined();
    });

    it('a deleted key stays deleted when a late lastUsedAt batch names it', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      await ctx.store.delete(key.ownerId, key.id);
      await ctx.store.recordLastUsed([{ id: key.id, lastUsedAt: new Date() }]);
      expect(await ctx.store.findByLookup(key.lookup)).toBeNull();
      expect(await ctx.store.listByOwner(key.ownerId)).toEqual([]);
    });
  });
}

/** `check()` is optional; a store that declares it must pass it when healthy. */
export function describeReadiness(ctx: SuiteContext): void {
  describe('readiness', () => {
    it('check(), if the store has one, resolves on a healthy store', async (test) => {
      if (!ctx.store.check) test.skip();
      await expect(ctx.store.check?.()).resolves.toBeUndefined();
    });
  });
}

export function describeSecretHygiene(
  ctx: SuiteContext,
  dumpContents: () => Promise<string>,
): void {
  describe('secret hygiene', () => {
    it('the store holds no raw key and no secret part, only the hash, lookup and masks', async () => {
      const generated = generateKey();
      const secret = generated.rawKey.slice(-38, -6);
      const key: StoredKey = {
        ...(await makeStoredKey()),
        lookup: generated.lookup,
        hash: await hashKey(generated.rawKey, CHEAP_ARGON2),
        keyPrefix: generated.keyPrefix,
        keySuffix: generated.keySuffix,
      };
      await ctx.store.insert(key, noCap);
      const dump = await dumpContents();
      expect(dump).toContain(generated.lookup);
      expect(dump).toContain(key.hash);
      expect(dump).not.toContain(generated.rawKey);
      expect(dump).not.toContain(secret);
      // Nor any 8-character run of the secret, in case a store splits or re-encodes it.
      for (let i = 0; i + 8 <= secret.length; i++) {
        expect(dump).not.toContain(secret.slice(i, i + 8));
      }
    });
  });
}

export function describeLifecycle(ctx: SuiteContext): void {
  describe('lifecycle: expiry, scopes, metadata, roll, cascade', () => {
    it('insert() and findByLookup() keep expiresAt, scopes, metadata and createdBy', async () => {
      const parent = await makeStoredKey();
      await ctx.store.insert(parent, noCap);
      const key = await makeStoredKey({
        ownerId: parent.ownerId,
        expiresAt: new Date('2031-01-31T00:00:00.001Z'),
        scopes: ['orders:read', 'api_keys:write', 'a.b-c_d:e'],
        metadata: { team: 'ops', nested: { list: [1, 'two', null, true], n: 1.5 }, emoji: '🔑' },
        createdBy: parent.id,
      });
      await ctx.store.insert(key, noCap);
      expect(await ctx.store.findByLookup(key.lookup)).toEqual(key);
      expect((await ctx.store.listByOwner(key.ownerId)).find((k) => k.id === key.id)).toEqual(key);
    });

    it('update() replaces metadata whole and leaves the other fields', async () => {
      const key = await makeStoredKey({ metadata: { a: 1, b: { c: 2 } } });
      await ctx.store.insert(key, noCap);
      const updated = await ctx.store.update(key.ownerId, key.id, { metadata: { d: 'x' } });
      expect(updated).toEqual({ ...key, metadata: { d: 'x' } });
      expect((await ctx.store.findByLookup(key.lookup))?.metadata).toEqual({ d: 'x' });
    });

    it('update() sets an expiry where there was none, shortens one, and never extends it', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      const later = new Date('2030-06-01T00:00:00.000Z');
      const sooner = new Date('2029-06-01T00:00:00.000Z');
      expect(
        (await ctx.store.update(key.ownerId, key.id, { expiresAt: later }))?.expiresAt,
      ).toEqual(later);
      expect(
        (await ctx.store.update(key.ownerId, key.id, { expiresAt: sooner }))?.expiresAt,
      ).toEqual(sooner);
      expect(
        (await ctx.store.update(key.ownerId, key.id, { expiresAt: later }))?.expiresAt,
      ).toEqual(sooner);
      expect((await ctx.store.findByLookup(key.lookup))?.expiresAt).toEqual(sooner);
    });

    it('concurrent updates of the expiry keep the earliest', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      const base = Date.parse('2030-01-01T00:00:00.000Z');
      const times = Array.from({ length: 10 }, (_, i) => new Date(base + (10 - i) * 1000));
      await Promise.all(
        times.map((expiresAt) => ctx.store.update(key.ownerId, key.id, { expiresAt })),
      );
      expect((await ctx.store.findByLookup(key.lookup))?.expiresAt).toEqual(new Date(base + 1000));
    });

    it('deleteTree() deletes a key and every key it created, transitively, and nothing else', async () => {
      const ownerId = `owner_${randomUUID()}`;
      const root = await makeStoredKey({ ownerId });
      const child = await makeStoredKey({ ownerId, createdBy: root.id });
      const grandchild = await makeStoredKey({ ownerId, createdBy: child.id });
      const greatGrandchild = await makeStoredKey({ ownerId, createdBy: grandchild.id });
      const sibling = await makeStoredKey({ ownerId, createdBy: root.id });
      const nephew = await makeStoredKey({ ownerId, createdBy: sibling.id });
      const unrelated = await makeStoredKey({ ownerId });
      const unrelatedChild = await makeStoredKey({ ownerId, createdBy: unrelated.id });
      const all = [
        root,
        child,
        grandchild,
        greatGrandchild,
        sibling,
        nephew,
        unrelated,
        unrelatedChild,
      ];
      for (const key of all) await ctx.store.insert(key, noCap);

      const deleted = await ctx.store.deleteTree(ownerId, root.id);
      expect(deleted[0]).toBe(root.id);
      expect([...deleted].sort()).toEqual(
        [root, child, grandchild, greatGrandchild, sibling, nephew].map((k) => k.id).sort(),
      );
      for (const key of [root, child, grandchild, greatGrandchild, sibling, nephew]) {
        expect(await ctx.store.findByLookup(key.lookup)).toBeNull();
      }
      expect((await ctx.store.listByOwner(ownerId)).map((k) => k.id).sort()).toEqual(
        [unrelated.id, unrelatedChild.id].sort(),
      );
    });

    it("deleteTree() of an unknown id, or another owner's, deletes nothing and returns []", async () => {
      const key = await makeStoredKey();
      const child = await makeStoredKey({ ownerId: key.ownerId, createdBy: key.id });
      await ctx.store.insert(key, noCap);
      await ctx.store.insert(child, noCap);
      expect(await ctx.store.deleteTree(`owner_${randomUUID()}`, key.id)).toEqual([]);
      expect(await ctx.store.deleteTree(key.ownerId, generateKeyId())).toEqual([]);
      expect(await ctx.store.findByLookup(key.lookup)).toEqual(key);
      expect(await ctx.store.findByLookup(child.lookup)).toEqual(child);
    });

    it('deleteTree() of a leaf deletes that key alone', async () => {
      const parent = await makeStoredKey();
      const leaf = await makeStoredKey({ ownerId: parent.ownerId, createdBy: parent.id });
      await ctx.store.insert(parent, noCap);
      await ctx.store.insert(leaf, noCap);
      expect(await ctx.store.deleteTree(parent.ownerId, leaf.id)).toEqual([leaf.id]);
      expect(await ctx.store.findByLookup(parent.lookup)).toEqual(parent);
    });

    it("roll() inserts the new key and shortens the old key's expiry in one step", async () => {
      const old = await makeStoredKey({ scopes: ['orders:read'], metadata: { a: 1 } });
      await ctx.store.insert(old, noCap);
      const next = await makeStoredKey({ ownerId: old.ownerId, scopes: ['orders:read'] });
      const now = new Date();
      const previousExpiresAt = new Date(now.getTime() + 86_400_000);
      const result = await ctx.store.roll(old.ownerId, old.id, next, {
        previousExpiresAt,
        now,
        maxKeysPerOwner: 100,
      });
      expect(result).toEqual({ ok: true, previous: { ...old, expiresAt: previousExpiresAt } });
      expect(await ctx.store.findByLookup(next.lookup)).toEqual(next);
      expect((await ctx.store.findByLookup(old.lookup))?.expiresAt).toEqual(previousExpiresAt);
    });

    it('roll() keeps an earlier expiry the old key already had', async () => {
      const now = new Date();
      const soon = new Date(now.getTime() + 60_000);
      const old = await makeStoredKey({ expiresAt: soon });
      await ctx.store.insert(old, noCap);
      const next = await makeStoredKey({ ownerId: old.ownerId });
      const result = await ctx.store.roll(old.ownerId, old.id, next, {
        previousExpiresAt: new Date(now.getTime() + 86_400_000),
        now,
        maxKeysPerOwner: 100,
      });
      expect(result.ok && result.previous.expiresAt).toEqual(soon);
    });

    it("roll() of an unknown, another owner's or an expired key changes nothing", async () => {
      const now = new Date();
      const expired = await makeStoredKey({ expiresAt: new Date(now.getTime() - 1) });
      await ctx.store.insert(expired, noCap);
      const options = { previousExpiresAt: now, now, maxKeysPerOwner: 100 };
      for (const [ownerId, id] of [
        [expired.ownerId, expired.id],
        [`owner_${randomUUID()}`, expired.id],
        [expired.ownerId, generateKeyId()],
      ] as const) {
        const next = await makeStoredKey({ ownerId });
        expect(await ctx.store.roll(ownerId, id, next, options)).toEqual({
          ok: false,
          reason: 'not_found',
        });
        expect(await ctx.store.findByLookup(next.lookup)).toBeNull();
      }
      expect(await ctx.store.findByLookup(expired.lookup)).toEqual(expired);
    });

    it('roll() at the cap refuses and changes nothing', async () => {
      const old = await makeStoredKey();
      await ctx.store.insert(old, noCap);
      const next = await makeStoredKey({ ownerId: old.ownerId });
      const now = new Date();
      expect(
        await ctx.store.roll(old.ownerId, old.id, next, {
          previousExpiresAt: now,
          now,
          maxKeysPerOwner: 1,
        }),
      ).toEqual({ ok: false, reason: 'limit_reached' });
      expect(await ctx.store.findByLookup(next.lookup)).toBeNull();
      expect(await ctx.store.findByLookup(old.lookup)).toEqual(old);
    });

    it('roll() with a colliding lookup part throws and changes nothing', async () => {
      const old = await makeStoredKey();
      const other = await makeStoredKey({ ownerId: old.ownerId });
      await ctx.store.insert(old, noCap);
      await ctx.store.insert(other, noCap);
      const next = await makeStoredKey({ ownerId: old.ownerId, lookup: other.lookup });
      const now = new Date();
      await expect(
        ctx.store.roll(old.ownerId, old.id, next, {
          previousExpiresAt: now,
          now,
          maxKeysPerOwner: 100,
        }),
      ).rejects.toMatchObject({ name: 'KeyCollisionError' });
      expect(await ctx.store.findByLookup(old.lookup)).toEqual(old);
      expect(await ctx.store.findByLookup(other.lookup)).toEqual(other);
      expect(await ctx.store.listByOwner(old.ownerId)).toHaveLength(2);
    });

    it('concurrent rolls of one key at the cap leave exactly the cap', async () => {
      const old = await makeStoredKey();
      await ctx.store.insert(old, noCap);
      const now = new Date();
      const nexts = await Promise.all(
        Array.from({ length: 8 }, () => makeStoredKey({ ownerId: old.ownerId })),
      );
      const results = await Promise.all(
        nexts.map((next) =>
          ctx.store.roll(old.ownerId, old.id, next, {
            previousExpiresAt: new Date(now.getTime() + 60_000),
            now,
            maxKeysPerOwner: 4,
          }),
        ),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(3);
      expect(await ctx.store.listByOwner(old.ownerId)).toHaveLength(4);
    });
  });
}

/** A window start far from any other test's, so suites sharing a store never meet. */
function someWindow(): number {
  return Math.floor(Date.now() / 10_000) * 10_000;
}

/** The lease contract (docs/design.md, "Leases"): atomic claims that never hand out more
 * than the allowance, returns, refills, and what roll and delete do to them. */
export function describeLeases(
  ctx: SuiteContext,
  options: Pick<StoreConformanceOptions, 'createPeers'> = {},
): void {
  describe('leases', () => {
    // One set of peers for the group: each holds connections of its own.
    let peers: Promise<KeyStore[]> | undefined;
    const peerStores = () => {
      peers ??= options.createPeers ? options.createPeers(4) : Promise.resolve([ctx.store]);
      return peers;
    };
    const limited = { rateLimit: { limit: 100, windowSec: 10 } };
    const withCredits = (remaining: number, resetAt = 1000) => ({
      credits: { remaining, refill: null, strict: false, resetAt },
    });

    it('limits and credits round-trip through insert, find, list and update', async () => {
      const key = await makeStoredKey({
        ...limited,
        credits: {
          remaining: 7,
          refill: { amount: 50, every: 'month' },
          strict: true,
          resetAt: 1_700_000_000_123,
        },
      });
      await ctx.store.insert(key, noCap);
      expect(await ctx.store.findByLookup(key.lookup)).toEqual(key);
      expect(await ctx.store.listByOwner(key.ownerId)).toEqual([key]);
      const updated = await ctx.store.update(key.ownerId, key.id, {
        rateLimit: null,
        credits: { remaining: 3, refill: null, strict: false, resetAt: 5 },
      });
      expect(updated?.rateLimit).toBeNull();
      expect(updated?.credits).toEqual({ remaining: 3, refill: null, strict: false, resetAt: 5 });
      const cleared = await ctx.store.update(key.ownerId, key.id, { credits: null });
      expect(cleared?.credits).toBeNull();
      expect((await ctx.store.findByLookup(key.lookup))?.credits).toBeNull();
    });

    it('claimWindow grants by the lease formula and never more than the limit', async () => {
      const key = await makeStoredKey(limited);
      await ctx.store.insert(key, noCap);
      const windowStart = someWindow();
      const claim = { windowStart, limit: 100, want: 10, atLeast: 1 };
      expect(await ctx.store.claimWindow(key.ownerId, key.id, claim)).toEqual({
        granted: 10,
        remaining: 90,
      });
      // A quarter of what is left, rounded up, once that is below `want`.
      expect(await ctx.store.claimWindow(key.ownerId, key.id, { ...claim, want: 1000 })).toEqual({
        granted: 23,
        remaining: 67,
      });
      let total = 33;
      for (;;) {
        const { granted } = await ctx.store.claimWindow(key.ownerId, key.id, claim);
        if (granted === 0) break;
        total += granted;
      }
      expect(total).toBe(100);
      // Asking for more than is left grants nothing.
      await ctx.store.returnWindow(key.ownerId, key.id, windowStart, 2);
      expect(await ctx.store.claimWindow(key.ownerId, key.id, { ...claim, atLeast: 3 })).toEqual({
        granted: 0,
        remaining: 2,
      });
      expect(await ctx.store.claimWindow(key.ownerId, key.id, { ...claim, atLeast: 2 })).toEqual({
        granted: 2,
        remaining: 0,
      });
    });

    it('a new window starts from zero; an older one grants nothing; returns to it are ignored', async () => {
      const key = await makeStoredKey(limited);
      await ctx.store.insert(key, noCap);
      const w1 = someWindow();
      const w2 = w1 + 10_000;
      await ctx.store.claimWindow(key.ownerId, key.id, {
        windowStart: w1,
        limit: 4,
        want: 4,
        atLeast: 4,
      });
      expect(
        await ctx.store.claimWindow(key.ownerId, key.id, {
          windowStart: w2,
          limit: 4,
          want: 4,
          atLeast: 1,
        }),
      ).toEqual({ granted: 1, remaining: 3 });
      expect(
        await ctx.store.claimWindow(key.ownerId, key.id, {
          windowStart: w1,
          limit: 4,
          want: 4,
          atLeast: 1,
        }),
      ).toEqual({ granted: 0, remaining: 0 });
      await ctx.store.returnWindow(key.ownerId, key.id, w1, 4);
      expect(
        await ctx.store.claimWindow(key.ownerId, key.id, {
          windowStart: w2,
          limit: 4,
          want: 4,
          atLeast: 3,
        }),
      ).toEqual({ granted: 3, remaining: 0 });
    });

    it('concurrent claims from several connections never hand out more than the limit', async () => {
      const key = await makeStoredKey(limited);
      await ctx.store.insert(key, noCap);
      const stores = await peerStores();
      const windowStart = someWindow();
      const grants = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          (stores[i % stores.length] as KeyStore).claimWindow(key.ownerId, key.id, {
            windowStart,
            limit: 100,
            want: 7,
            atLeast: 1,
          }),
        ),
      );
      const total = grants.reduce((sum, g) => sum + g.granted, 0);
      expect(total).toBe(100);
    });

    it("another owner's key grants nothing and its counts stay as they are", async () => {
      const key = await makeStoredKey({ ...limited, ...withCredits(5) });
      await ctx.store.insert(key, noCap);
      const windowStart = someWindow();
      const other = `owner_${randomUUID()}`;
      expect(
        await ctx.store.claimWindow(other, key.id, { windowStart, limit: 5, want: 5, atLeast: 1 }),
      ).toEqual({ granted: 0, remaining: 0 });
      expect(
        await ctx.store.claimCredits(other, key.id, { want: 5, atLeast: 1, periodStart: null }),
      ).toBeNull();
      await ctx.store.returnCredits(other, key.id, 100, 1000);
      expect((await ctx.store.findByLookup(key.lookup))?.credits?.remaining).toBe(5);
      expect(
        await ctx.store.claimWindow(key.ownerId, key.id, {
          windowStart,
          limit: 5,
          want: 5,
          atLeast: 5,
        }),
      ).toEqual({ granted: 5, remaining: 0 });
    });

    it('an unknown key grants nothing and keeps nothing', async () => {
      const id = generateKeyId();
      const windowStart = someWindow();
      expect(
        await ctx.store.claimWindow('owner_nobody', id, {
          windowStart,
          limit: 5,
          want: 5,
          atLeast: 1,
        }),
      ).toEqual({ granted: 0, remaining: 0 });
      expect(
        await ctx.store.claimCredits('owner_nobody', id, {
          want: 1,
          atLeast: 1,
          periodStart: null,
        }),
      ).toBeNull();
      await ctx.store.returnWindow('owner_nobody', id, windowStart, 3);
      await ctx.store.returnCredits('owner_nobody', id, 3, 0);
    });

    it('claimCredits never takes the balance below zero, even concurrently', async () => {
      const key = await makeStoredKey(withCredits(50));
      await ctx.store.insert(key, noCap);
      const stores = await peerStores();
      const grants = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          (stores[i % stores.length] as KeyStore).claimCredits(key.ownerId, key.id, {
            want: 3,
            atLeast: 3,
            periodStart: null,
          }),
        ),
      );
      const taken = grants.reduce((sum, g) => sum + (g?.granted ?? 0), 0);
      expect(taken).toBe(48);
      expect((await ctx.store.findByLookup(key.lookup))?.credits?.remaining).toBe(2);
      expect(
        await ctx.store.claimCredits(key.ownerId, key.id, {
          want: 3,
          atLeast: 3,
          periodStart: null,
        }),
      ).toEqual({
        granted: 0,
        remaining: 2,
        resetAt: 1000,
      });
    });

    it('a return counts only toward the balance it came from', async () => {
      const key = await makeStoredKey(withCredits(10));
      await ctx.store.insert(key, noCap);
      const grant = await ctx.store.claimCredits(key.ownerId, key.id, {
        want: 6,
        atLeast: 1,
        periodStart: null,
      });
      expect(grant).toEqual({ granted: 3, remaining: 7, resetAt: 1000 });
      await ctx.store.returnCredits(key.ownerId, key.id, 3, 1000);
      expect((await ctx.store.findByLookup(key.lookup))?.credits?.remaining).toBe(10);
      await ctx.store.claimCredits(key.ownerId, key.id, { want: 2, atLeast: 2, periodStart: null });
      await ctx.store.update(key.ownerId, key.id, {
        credits: { remaining: 5, refill: null, strict: false, resetAt: 2000 },
      });
      await ctx.store.returnCredits(key.ownerId, key.id, 2, 1000);
      expect((await ctx.store.findByLookup(key.lookup))?.credits?.remaining).toBe(5);
    });

    it('a claim in a later refill period sets the balance to the refill amount first', async () => {
      const key = await makeStoredKey({
        credits: {
          remaining: 1,
          refill: { amount: 30, every: 'day' },
          strict: false,
          resetAt: 1000,
        },
      });
      await ctx.store.insert(key, noCap);
      // Same period: no refill.
      expect(
        await ctx.store.claimCredits(key.ownerId, key.id, {
          want: 5,
          atLeast: 1,
          periodStart: 1000,
        }),
      ).toEqual({ granted: 1, remaining: 0, resetAt: 1000 });
      expect(
        await ctx.store.claimCredits(key.ownerId, key.id, {
          want: 5,
          atLeast: 1,
          periodStart: 86_400_000,
        }),
      ).toEqual({ granted: 5, remaining: 25, resetAt: 86_400_000 });
      // The old period's lease comes back too late: ignored.
      await ctx.store.returnCredits(key.ownerId, key.id, 1, 1000);
      expect((await ctx.store.findByLookup(key.lookup))?.credits?.remaining).toBe(25);
    });

    it('roll moves the balance and the window count to the new key', async () => {
      const old = await makeStoredKey({ ...limited, ...withCredits(40) });
      await ctx.store.insert(old, noCap);
      const windowStart = someWindow();
      await ctx.store.claimWindow(old.ownerId, old.id, {
        windowStart,
        limit: 100,
        want: 30,
        atLeast: 30,
      });
      await ctx.store.claimCredits(old.ownerId, old.id, { want: 4, atLeast: 4, periodStart: null });
      const next = await makeStoredKey({ ownerId: old.ownerId, ...limited, ...withCredits(40) });
      const now = new Date();
      const result = await ctx.store.roll(old.ownerId, old.id, next, {
        previousExpiresAt: new Date(now.getTime() + 60_000),
        now,
        maxKeysPerOwner: 10,
      });
      expect(result.ok).toBe(true);
      const after = await ctx.store.findByLookup(next.lookup);
      expect(after?.credits).toEqual({ remaining: 36, refill: null, strict: false, resetAt: 1000 });
      const before = await ctx.store.findByLookup(old.lookup);
      expect(before?.credits).toEqual({
        remaining: 0,
        refill: null,
        strict: false,
        resetAt: now.getTime(),
      });
      // The old key's lease returned now is of a balance that moved: ignored.
      await ctx.store.returnCredits(old.ownerId, old.id, 4, 1000);
      expect((await ctx.store.findByLookup(old.lookup))?.credits?.remaining).toBe(0);
      expect(
        await ctx.store.claimWindow(next.ownerId, next.id, {
          windowStart,
          limit: 100,
          want: 100,
          atLeast: 70,
        }),
      ).toEqual({ granted: 70, remaining: 0 });
    });

    it('delete takes the counters with the key: a new key never inherits them', async () => {
      const key = await makeStoredKey({ ...limited, ...withCredits(9) });
      await ctx.store.insert(key, noCap);
      const windowStart = someWindow();
      await ctx.store.claimWindow(key.ownerId, key.id, {
        windowStart,
        limit: 10,
        want: 10,
        atLeast: 10,
      });
      await ctx.store.delete(key.ownerId, key.id);
      expect(
        await ctx.store.claimWindow(key.ownerId, key.id, {
          windowStart,
          limit: 10,
          want: 10,
          atLeast: 1,
        }),
      ).toEqual({ granted: 0, remaining: 0 });
      await ctx.store.insert({ ...key, lookup: (await makeStoredKey()).lookup }, noCap);
      expect(
        await ctx.store.claimWindow(key.ownerId, key.id, {
          windowStart,
          limit: 10,
          want: 10,
          atLeast: 10,
        }),
      ).toEqual({ granted: 10, remaining: 0 });
    });
  });
}

export function describeLeakMark(ctx: SuiteContext): void {
  describe('leak mark: leakedAt, leakSource', () => {
    it('insert() and findByLookup() keep leakedAt and leakSource, listByOwner() too', async () => {
      const key = await makeStoredKey({
        leakedAt: new Date('2026-12-01T15:00:00.007Z'),
        leakSource: 'github',
      });
      await ctx.store.insert(key, noCap);
      expect(await ctx.store.findByLookup(key.lookup)).toEqual(key);
      expect(await ctx.store.listByOwner(key.ownerId)).toEqual([key]);
    });

    it('update() with leak marks the key, shortens its expiry and leaves the other fields', async () => {
      const key = await makeStoredKey({ expiresAt: new Date('2031-01-01T00:00:00.000Z') });
      await ctx.store.insert(key, noCap);
      const at = new Date('2026-12-01T15:00:00.123Z');
      const grace = new Date('2026-12-01T16:00:00.123Z');
      const updated = await ctx.store.update(key.ownerId, key.id, {
        expiresAt: grace,
        leak: { at, source: 'report' },
      });
      const expected = { ...key, expiresAt: grace, leakedAt: at, leakSource: 'report' };
      expect(updated).toEqual(expected);
      expect(await ctx.store.findByLookup(key.lookup)).toEqual(expected);
    });

    it('update() keeps the first leak mark: a second one changes neither field', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      const first = new Date('2026-12-01T15:00:00.000Z');
      await ctx.store.update(key.ownerId, key.id, { leak: { at: first, source: 'github' } });
      const again = await ctx.store.update(key.ownerId, key.id, {
        leak: { at: new Date('2026-12-01T15:30:00.000Z'), source: 'report' },
      });
      expect(again).toMatchObject({ leakedAt: first, leakSource: 'github' });
      expect(await ctx.store.findByLookup(key.lookup)).toMatchObject({
        leakedAt: first,
        leakSource: 'github',
      });
    });

    it('concurrent leak marks of one key leave exactly one of them, both fields from the same', async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      const base = Date.parse('2026-12-01T15:00:00.000Z');
      await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          ctx.store.update(key.ownerId, key.id, {
            leak: { at: new Date(base + i), source: `source-${i}` },
          }),
        ),
      );
      const found = await ctx.store.findByLookup(key.lookup);
      const i = (found?.leakedAt?.getTime() ?? Number.NaN) - base;
      expect(i).toBeGreaterThanOrEqual(0);
      expect(found?.leakSource).toBe(`source-${i}`);
    });

    it("update() with leak on another owner's key returns null and marks nothing", async () => {
      const key = await makeStoredKey();
      await ctx.store.insert(key, noCap);
      expect(
        await ctx.store.update(`owner_${randomUUID()}`, key.id, {
          leak: { at: new Date(), source: 'github' },
        }),
      ).toBeNull();
      expect(await ctx.store.findByLookup(key.lookup)).toEqual(key);
    });
  });
}
