import { setTimeout as sleep } from 'node:timers/promises';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { describe, expect, it } from 'vitest';
import { memoryBus } from '../src/bus.js';
import { KeywardError } from '../src/errors.js';
import { generateKey } from '../src/key-format.js';
import { LastUsedWriter } from '../src/last-used.js';
import { memoryStore } from '../src/memory-store.js';
import { createKeyService } from '../src/service.js';
import type { KeyStore } from '../src/store.js';
import { service, wrongSecretFor } from './test-fixtures.js';

/** Counts every call the service makes to its store. */
function countingStore(inner: KeyStore = memoryStore()) {
  const calls: Record<string, number> = {};
  const store = {} as KeyStore;
  for (const method of Object.keys(inner) as Array<keyof KeyStore>) {
    if (typeof inner[method] !== 'function') continue;
    // biome-ignore lint/suspicious/noExplicitAny: forwards each method's own arguments.
    (store as any)[method] = (...args: unknown[]) => {
      calls[method] = (calls[method] ?? 0) + 1;
      // biome-ignore lint/suspicious/noExplicitAny: see above.
      return (inner as any)[method](...args);
    };
  }
  return { store, calls, inner };
}

describe('key service: management', () => {
  it('create → list → rename → revoke, scoped to the owner', async () => {
    const keys = service();
    const created = await keys.create('acct_1', '  Production  ');
    expect(created.name).toBe('Production');
    expect(created.lastUsedAt).toBeNull();
    expect((await keys.list('acct_1')).map((k) => k.id)).toEqual([created.id]);
    expect(await keys.list('acct_2')).toEqual([]);
    expect(await keys.rename('acct_2', created.id, 'x')).toBeNull();
    expect((await keys.rename('acct_1', created.id, 'Staging'))?.name).toBe('Staging');
    expect(await keys.revoke('acct_2', created.id)).toBe(false);
    expect(await keys.revoke('acct_1', created.id)).toBe(true);
    expect(await keys.verify(created.rawKey)).toEqual({ ok: false, reason: 'unknown_key' });
  });

  it('the list result holds no raw key, hash or lookup part', async () => {
    const keys = service();
    const created = await keys.create('acct_1', 'k');
    const [listed] = await keys.list('acct_1');
    expect(Object.keys(listed ?? {}).sort()).toEqual(
      [
        'createdAt',
        'id',
        'keyPrefix',
        'keySuffix',
        'lastUsedAt',
        'name',
        'expiresAt',
        'scopes',
        'metadata',
        'createdBy',
        'rateLimit',
        'credits',
        'leakedAt',
        'leakSource',
      ].sort(),
    );
    expect(JSON.stringify(listed)).not.toContain(created.rawKey.slice(16, 48));
  });

  it('create refuses bad names and owners with clear errors', async () => {
    const keys = service();
    await expect(keys.create('acct_1', '')).rejects.toMatchObject({
      code: 'invalid_request',
      message: '`name` must not be empty.',
    });
    await expect(keys.create('acct_1', 'x'.repeat(101))).rejects.toMatchObject({
      message: '`name` must be at most 100 characters.',
    });
    await expect(keys.create('', 'ok')).rejects.toThrow(TypeError);
  });

  it('refuses owner ids with a lone surrogate, which database drivers would store as U+FFFD (two such owners would be one)', async () => {
    const keys = service();
    for (const ownerId of ['\uD800', 'acct_\uDC00', 'a\uD83D']) {
      await expect(keys.create(ownerId, 'k')).rejects.toThrow(/well-formed Unicode/);
      await expect(keys.list(ownerId)).rejects.toThrow(TypeError);
      await expect(keys.revoke(ownerId, 'key_x')).rejects.toThrow(TypeError);
    }
    expect((await keys.create('acct_😀', 'emoji owners are fine')).name).toBe(
      'emoji owners are fine',
    );
  });

  it('create answers key_limit_reached at the cap', async () => {
    const keys = service({ maxKeysPerOwner: 2 });
    await keys.create('acct_1', 'a');
    await keys.create('acct_1', 'b');
    await expect(keys.create('acct_1', 'c')).rejects.toMatchObject({ code: 'key_limit_reached' });
  });

  it('rejects nonsense options when the service is made', () => {
    expect(() => createKeyService({ store: memoryStore(), prefix: 'Bad_' })).toThrow(/prefix/);
    expect(() => createKeyService({ store: memoryStore(), maxKeysPerOwner: 0 })).toThrow(
      /maxKeysPerOwner/,
    );
    expect(() => createKeyService({} as never)).toThrow(/store/);
  });

  it('refuses argon2 settings below OWASP minimums unless allowWeakParameters is set', async () => {
    const weak = { memoryCost: 8, timeCost: 1, parallelism: 1 };
    expect(() => createKeyService({ store: memoryStore(), argon2: weak })).toThrow(
      /below OWASP's minimums.*allowWeakParameters/,
    );
    // One short of each listed minimum is refused; each minimum itself is accepted.
    for (const [memoryCost, timeCost] of [
      [47104, 1],
      [19456, 2],
      [12288, 3],
      [9216, 4],
      [7168, 5],
    ] as const) {
      expect(() =>
        createKeyService({
          store: memoryStore(),
          argon2: { memoryCost: memoryCost - 1, timeCost },
        }),
      ).toThrow(/below OWASP/);
      expect(() =>
        createKeyService({ store: memoryStore(), argon2: { memoryCost, timeCost } }),
      ).not.toThrow();
    }
    expect(() =>
      createKeyService({
        store: memoryStore(),
        argon2: { timeCost: 0, allowWeakParameters: true },
      }),
    ).toThrow(/argon2.timeCost. must be a positive integer/);
    expect(() =>
      createKeyService({
        store: memoryStore(),
        argon2: { memoryCost: 4, allowWeakParameters: true },
      }),
    ).toThrow(/8 KiB per lane/);
    // The escape hatch works, and the flag itself never reaches argon2.
    const keys = service({ argon2: { ...weak, allowWeakParameters: true } });
    const { rawKey } = await keys.create('acct_1', 'weak but allowed');
    expect((await keys.verify(rawKey)).ok).toBe(true);
  });

  it('issues and accepts keys of its own prefix only', async () => {
    const live = service({ prefix: 'live' });
    const { rawKey } = await live.create('acct_1', 'k');
    expect(rawKey.startsWith('live_')).toBe(true);
    expect((await live.verify(rawKey)).ok).toBe(true);
    expect(await live.verify(generateKey('rep').rawKey)).toEqual({
      ok: false,
      reason: 'malformed',
    });
  });
});

describe('key service: verification path', () => {
  it('a cached key touches neither the store nor argon2', async () => {
    const { store, calls } = countingStore();
    const keys = service({ store });
    const { rawKey } = await keys.create('acct_1', 'k');
    expect((await keys.verify(rawKey)).ok).toBe(true);
    expect(calls.findByLookup).toBe(1);
    for (let i = 0; i < 100; i++) expect((await keys.verify(rawKey)).ok).toBe(true);
    expect(calls.findByLookup).toBe(1);
  });

  it('a malformed key costs no store access', async () => {
    const { store, calls } = countingStore();
    const keys = service({ store });
    const { rawKey } = await keys.create('acct_1', 'k');
    const typo = `${rawKey.slice(0, 10)}${rawKey[10] === 'a' ? 'b' : 'a'}${rawKey.slice(11)}`;
    expect(await keys.verify(typo)).toEqual({ ok: false, reason: 'malformed' });
    expect(calls.findByLookup).toBeUndefined();
  });

  it('an unknown key is read from the store once per negative-cache TTL', async () => {
    const { store, calls } = countingStore();
    const keys = service({ store, negativeCache: { ttlMs: 100 } });
    const unknown = generateKey().rawKey;
    for (let i = 0; i < 5; i++) expect(await keys.verify(unknown)).toMatchObject({ ok: false });
    expect(calls.findByLookup).toBe(1);
    await sleep(150);
    await keys.verify(unknown);
    expect(calls.findByLookup).toBe(2);
  });

  it('concurrent verifications of one cold key share one store read and one argon2 run', async () => {
    const { store, calls } = countingStore();
    const keys = service({ store });
    const { rawKey } = await keys.create('acct_1', 'k');
    const results = await Promise.all(Array.from({ length: 20 }, () => keys.verify(rawKey)));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(calls.findByLookup).toBe(1);
  });

  it('after maxFailures wrong secrets, a lookup part is refused for the cooldown without argon2; cached keys are unaffected', async () => {
    const { store, calls } = countingStore();
    const keys = service({ store, verification: { maxFailures: 3, cooldownMs: 200 } });
    const { rawKey } = await keys.create('acct_1', 'k');
    const other = await keys.create('acct_1', 'cached');
    await keys.verify(other.rawKey);
    for (let i = 0; i < 3; i++) {
      expect(await keys.verify(wrongSecretFor(rawKey))).toEqual({
        ok: false,
        reason: 'wrong_secret',
      });
    }
    const readsBefore = calls.findByLookup;
    expect(await keys.verify(wrongSecretFor(rawKey))).toEqual({
      ok: false,
      reason: 'too_many_failures',
    });
    expect(await keys.verify(rawKey)).toEqual({ ok: false, reason: 'too_many_failures' });
    expect(calls.findByLookup).toBe(readsBefore);
    expect((await keys.verify(other.rawKey)).ok).toBe(true);
    await sleep(250);
    expect((await keys.verify(rawKey)).ok).toBe(true);
  });

  it('past the argon2 queue bound, verification answers service_unavailable at once', async () => {
    const keys = service({
      argon2: { memoryCost: 19456, timeCost: 2, parallelism: 1 },
      verification: { maxConcurrent: 1, maxQueue: 2 },
    });
    const { rawKey } = await keys.create('acct_1', 'k');
    const attempts = Array.from({ length: 8 }, () => keys.verify(wrongSecretFor(rawKey)));
    const settled = await Promise.allSettled(attempts);
    const rejected = settled.filter((s) => s.status === 'rejected');
    expect(rejected.length).toBe(5);
    for (const r of rejected) {
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(KeywardError);
      expect((r as PromiseRejectedResult).reason).toMatchObject({
        code: 'service_unavailable',
        retryAfter: 1,
      });
    }
  });

  it('a store failure on a cold key is service_unavailable, never a refusal; the cached key keeps working', async () => {
    const inner = memoryStore();
    let down = false;
    const store: KeyStore = {
      ...inner,
      findByLookup: (lookup) =>
        down ? Promise.reject(new Error('ECONNREFUSED')) : inner.findByLookup(lookup),
    };
    const errors: unknown[] = [];
    const keys = service({ store, onError: (e) => errors.push(e) });
    const warm = await keys.create('acct_1', 'warm');
    const cold = await keys.create('acct_1', 'cold');
    await keys.verify(warm.rawKey);
    down = true;
    await expect(keys.verify(cold.rawKey)).rejects.toMatchObject({ code: 'service_unavailable' });
    expect((await keys.verify(warm.rawKey)).ok).toBe(true);
    expect(errors).toHaveLength(1);
    down = false;
    expect((await keys.verify(cold.rawKey)).ok).toBe(true);
  });

  it('a store that hangs answers service_unavailable after storeTimeoutMs', async () => {
    const inner = memoryStore();
    const store: KeyStore = { ...inner, findByLookup: () => new Promise(() => {}) };
    const keys = service({ store, storeTimeoutMs: 50 });
    const { rawKey } = await keys.create('acct_1', 'k');
    const started = Date.now();
    await expect(keys.verify(rawKey)).rejects.toMatchObject({ code: 'service_unavailable' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a store method that throws instead of rejecting also answers service_unavailable', async () => {
    const inner = memoryStore();
    const broken = new Error('store bug');
    const store: KeyStore = {
      ...inner,
      findByLookup: () => {
        throw broken;
      },
    };
    const keys = service({ store });
    const { rawKey } = await keys.create('acct_1', 'k');
    await expect(keys.verify(rawKey)).rejects.toMatchObject({
      code: 'service_unavailable',
      cause: broken,
    });
  });

  it('an insert that lands after its timeout is removed, so no key nobody holds is left', async () => {
    const inner = memoryStore();
    const store: KeyStore = {
      ...inner,
      insert: async (key, options) => {
        await sleep(120);
        return inner.insert(key, options);
      },
    };
    const keys = service({ store, storeTimeoutMs: 30 });
    await expect(keys.create('acct_1', 'slow')).rejects.toMatchObject({
      code: 'service_unavailable',
    });
    await sleep(250);
    expect(inner.snapshot()).toEqual([]);
  });

  it('onInvalidKey gets the reason and at most the masked prefix, never the key', async () => {
    const events: unknown[] = [];
    const keys = service({ onInvalidKey: (e) => events.push(e) });
    const { rawKey } = await keys.create('acct_1', 'k');
    const wrong = wrongSecretFor(rawKey);
    await keys.verify('garbage-secret-value');
    await keys.verify(wrong);
    await keys.verify(wrong);
    expect(events).toEqual([
      { reason: 'malformed' },
      { reason: 'wrong_secret', keyPrefix: wrong.slice(0, 8) },
      { reason: 'wrong_secret', keyPrefix: wrong.slice(0, 8) },
    ]);
    expect(JSON.stringify(events)).not.toContain('garbage');
  });
});

describe('key service: positive cache bound and order', () => {
  it('holds at most cache.max keys: the least recently used one goes and costs a store read again', async () => {
    const { store, calls } = countingStore();
    const keys = service({ store, cache: { max: 2 } });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => keys.create('acct_1', n)));
    for (const key of [a, b, c]) expect((await keys.verify(key?.rawKey ?? '')).ok).toBe(true);
    expect(keys.stats().cachedKeys).toBe(2);
    expect(keys.verifyCached(a?.rawKey ?? '')).toBeUndefined();
    expect(keys.verifyCached(c?.rawKey ?? '')?.id).toBe(c?.id);
    const reads = calls.findByLookup;
    expect((await keys.verify(a?.rawKey ?? '')).ok).toBe(true);
    expect(calls.findByLookup).toBe((reads ?? 0) + 1);
  });

  it('each entry lives its own TTL: an evicted key cached again is not dropped on the old entry’s time', async () => {
    const keys = service({ cache: { max: 1, ttlMs: 300 } });
    const [a, b] = await Promise.all(['a', 'b'].map((n) => keys.create('acct_1', n)));
    await keys.verify(a?.rawKey ?? '');
    await keys.verify(b?.rawKey ?? ''); // evicts a
    await sleep(150);
    await keys.verify(a?.rawKey ?? ''); // a again, for 300 ms from now
    await sleep(200); // past the first entry's time
    expect(keys.verifyCached(a?.rawKey ?? '')?.id).toBe(a?.id);
    await sleep(150); // past its own
    expect(keys.verifyCached(a?.rawKey ?? '')).toBeUndefined();
    expect(keys.stats().cachedKeys).toBe(0);
  });

  it('a key in use keeps its place: hits refresh its LRU order (at most once a second)', async () => {
    const keys = service({ cache: { max: 2 } });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => keys.create('acct_1', n)));
    await keys.verify(a?.rawKey ?? '');
    await keys.verify(b?.rawKey ?? '');
    await sleep(1_050);
    // a was verified first, but is the one in use: b is the least recently used now.
    expect(keys.verifyCached(a?.rawKey ?? '')?.id).toBe(a?.id);
    await keys.verify(c?.rawKey ?? '');
    expect(keys.verifyCached(a?.rawKey ?? '')?.id).toBe(a?.id);
    expect(keys.verifyCached(b?.rawKey ?? '')).toBeUndefined();
  });
});

describe('key service: invalidation', () => {
  it('revoke drops the key from the cache at once, on this instance', async () => {
    const keys = service();
    const { rawKey, id } = await keys.create('acct_1', 'k');
    expect((await keys.verify(rawKey)).ok).toBe(true);
    await keys.revoke('acct_1', id);
    expect(await keys.verify(rawKey)).toEqual({ ok: false, reason: 'unknown_key' });
  });

  it('a verification in flight during a revoke does not put the key back in the cache', async () => {
    const inner = memoryStore();
    let gate: (() => void) | undefined;
    const store: KeyStore = {
      ...inner,
      findByLookup: async (lookup) => {
        const found = await inner.findByLookup(lookup);
        await new Promise<void>((resolve) => {
          gate = resolve;
        });
        return found;
      },
    };
    const keys = service({ store });
    const { rawKey, id } = await keys.create('acct_1', 'k');
    const inFlight = keys.verify(rawKey);
    await sleep(10);
    await keys.revoke('acct_1', id);
    gate?.();
    await inFlight;
    const after = keys.verify(rawKey);
    await sleep(10);
    gate?.();
    expect(await after).toEqual({ ok: false, reason: 'unknown_key' });
  });

  it('with a bus, a key revoked through one instance is refused by another at once', async () => {
    const store = memoryStore();
    const bus = memoryBus();
    const a = service({ store, bus });
    const b = service({ store, bus });
    await Promise.all([a.ready(), b.ready()]);
    const { rawKey, id } = await a.create('acct_1', 'k');
    expect((await b.verify(rawKey)).ok).toBe(true);
    await a.revoke('acct_1', id);
    expect((await b.verify(rawKey)).ok).toBe(false);
  });

  it('with a bus, a rename shows in the other instance’s next verification', async () => {
    const store = memoryStore();
    const bus = memoryBus();
    const a = service({ store, bus });
    const b = service({ store, bus });
    await Promise.all([a.ready(), b.ready()]);
    const { rawKey, id } = await a.create('acct_1', 'old');
    await b.verify(rawKey);
    await a.rename('acct_1', id, 'new');
    expect(await b.verify(rawKey)).toMatchObject({ ok: true, key: { name: 'new' } });
  });

  it('without a bus, another instance keeps a revoked key until its cache TTL, then refuses it', async () => {
    const store = memoryStore();
    const a = service({ store });
    const b = service({ store, cache: { ttlMs: 150 } });
    const { rawKey, id } = await a.create('acct_1', 'k');
    expect((await b.verify(rawKey)).ok).toBe(true);
    await a.revoke('acct_1', id);
    expect((await b.verify(rawKey)).ok).toBe(true);
    await sleep(200);
    expect((await b.verify(rawKey)).ok).toBe(false);
  });
});

describe('key service: lastUsedAt write-behind', () => {
  it('verifications write nothing; one flush writes one entry per used key', async () => {
    const { store, inner } = countingStore();
    const batches: number[] = [];
    const recording: KeyStore = {
      ...store,
      recordLastUsed: async (updates) => {
        batches.push(updates.length);
        return inner.recordLastUsed(updates);
      },
    };
    const keys = service({ store: recording, lastUsedFlushIntervalMs: 60_000 });
    const a = await keys.create('acct_1', 'a');
    const b = await keys.create('acct_1', 'b');
    for (let i = 0; i < 50; i++) {
      await keys.verify(a.rawKey);
      await keys.verify(b.rawKey);
    }
    expect(batches).toEqual([]);
    const listed = await keys.list('acct_1');
    expect(listed.every((k) => k.lastUsedAt instanceof Date)).toBe(true);
    await keys.flushLastUsed();
    expect(batches).toEqual([2]);
    await keys.flushLastUsed();
    expect(batches).toEqual([2]);
  });

  it('a failed flush is kept and written by the next one; close() flushes', async () => {
    const inner = memoryStore();
    let failing = true;
    const store: KeyStore = {
      ...inner,
      recordLastUsed: (updates) =>
        failing ? Promise.reject(new Error('down')) : inner.recordLastUsed(updates),
    };
    const keys = createKeyService({ store, argon2: CHEAP_ARGON2, lastUsedFlushIntervalMs: 60_000 });
    const { rawKey } = await keys.create('acct_1', 'k');
    await keys.verify(rawKey);
    await expect(keys.flushLastUsed()).rejects.toThrow('down');
    expect(inner.snapshot()[0]?.lastUsedAt).toBeNull();
    expect((await keys.list('acct_1'))[0]?.lastUsedAt).toBeInstanceOf(Date);
    failing = false;
    await keys.close();
    expect(inner.snapshot()[0]?.lastUsedAt).toBeInstanceOf(Date);
  });

  it('the timer flushes by itself', async () => {
    const inner = memoryStore();
    const keys = service({ store: inner, lastUsedFlushIntervalMs: 30 });
    const { rawKey } = await keys.create('acct_1', 'k');
    await keys.verify(rawKey);
    await sleep(100);
    expect(inner.snapshot()[0]?.lastUsedAt).toBeInstanceOf(Date);
  });
});

describe('lastUsedAt writer: flush and stalls', () => {
  it('flush() also writes uses noted while an earlier write was under way', async () => {
    const inner = memoryStore();
    const keys = service({ store: inner });
    const a = await keys.create('acct_1', 'a');
    const b = await keys.create('acct_1', 'b');
    let release: (() => void) | undefined;
    let calls = 0;
    const store: KeyStore = {
      ...inner,
      recordLastUsed: async (updates) => {
        if (calls++ === 0) await new Promise<void>((resolve) => (release = resolve));
        return inner.recordLastUsed(updates);
      },
    };
    const writer = new LastUsedWriter(store, 60_000, () => {}, 5000);
    writer.record(a.id, Date.parse('2025-01-01T00:00:00.000Z'));
    const first = writer.flush();
    await sleep(10);
    writer.record(b.id, Date.parse('2025-01-01T00:00:01.000Z'));
    const second = writer.flush();
    release?.();
    await Promise.all([first, second]);
    const byId = new Map(inner.snapshot().map((k) => [k.id, k.lastUsedAt?.toISOString()]));
    expect(byId.get(a.id)).toBe('2025-01-01T00:00:00.000Z');
    expect(byId.get(b.id)).toBe('2025-01-01T00:00:01.000Z');
    await writer.close();
  });

  it('a stalled write times out, keeps its batch, and the next flush writes it', async () => {
    const inner = memoryStore();
    const keys = service({ store: inner });
    const a = await keys.create('acct_1', 'a');
    let stalled = true;
    const store: KeyStore = {
      ...inner,
      recordLastUsed: (updates) =>
        stalled ? new Promise(() => {}) : inner.recordLastUsed(updates),
    };
    const writer = new LastUsedWriter(store, 60_000, () => {}, 50);
    writer.record(a.id, Date.parse('2025-01-01T00:00:00.000Z'));
    await expect(writer.flush()).rejects.toThrow(/timed out/);
    expect(writer.pendingFor(a.id)?.toISOString()).toBe('2025-01-01T00:00:00.000Z');
    stalled = false;
    await writer.close();
    expect(inner.snapshot()[0]?.lastUsedAt?.toISOString()).toBe('2025-01-01T00:00:00.000Z');
  });
});

describe('key service: a create that lands after its timeout', () => {
  it('is deleted, retrying while the store still fails', async () => {
    const inner = memoryStore();
    let deleteFailures = 1;
    const store: KeyStore = {
      ...inner,
      insert: async (key, options) => {
        await sleep(100);
        return inner.insert(key, options);
      },
      delete: (ownerId, id) =>
        deleteFailures-- > 0 ? Promise.reject(new Error('still down')) : inner.delete(ownerId, id),
    };
    const keys = service({ store, storeTimeoutMs: 30 });
    await expect(keys.create('acct_1', 'slow')).rejects.toMatchObject({
      code: 'service_unavailable',
    });
    await sleep(300);
    expect(inner.snapshot()).toHaveLength(1);
    await sleep(1200);
    expect(inner.snapshot()).toEqual([]);
  });
});

describe('key service: verifyCached', () => {
  it('answers only from the cache: undefined when cold, the key once verified, undefined again after revoke', async () => {
    const { store, calls } = countingStore();
    const keys = service({ store });
    const { rawKey, id } = await keys.create('acct_1', 'k');
    expect(keys.verifyCached(rawKey)).toBeUndefined();
    expect(calls.findByLookup).toBeUndefined();
    await keys.verify(rawKey);
    expect(keys.verifyCached(rawKey)).toMatchObject({ id, ownerId: 'acct_1' });
    expect(keys.verifyCached(generateKey().rawKey)).toBeUndefined();
    await keys.revoke('acct_1', id);
    expect(keys.verifyCached(rawKey)).toBeUndefined();
  });

  it('notes the use, as verify does', async () => {
    const keys = service({ lastUsedFlushIntervalMs: 60_000 });
    const { rawKey } = await keys.create('acct_1', 'k');
    await keys.verify(rawKey);
    await keys.flushLastUsed();
    const before = (await keys.list('acct_1'))[0]?.lastUsedAt?.getTime() ?? 0;
    await sleep(5);
    keys.verifyCached(rawKey);
    expect((await keys.list('acct_1'))[0]?.lastUsedAt?.getTime()).toBeGreaterThan(before);
  });
});
