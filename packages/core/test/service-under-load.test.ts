/**
 * The verification path under load: the refusal delay that keeps a flood of bad keys from
 * crowding out cached traffic, the failure budget under a burst, and the hot path's own
 * guarantees (cached results are shared and frozen, lastUsedAt follows the service's clock).
 */
import { describe, expect, it } from 'vitest';
import { generateKey } from '../src/key-format.js';
import { LastUsedWriter } from '../src/last-used.js';
import { memoryStore } from '../src/memory-store.js';
import { createKeyService } from '../src/service.js';
import type { KeyStore, LastUsedUpdate } from '../src/store.js';
import { service, wrongSecretFor } from './test-fixtures.js';

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work;
  return { value, ms: performance.now() - started };
}

describe('key service: refusals over refusalsPerSecond are held for failureDelayMs', () => {
  it('answers a trickle of refusals at once and holds the ones past the rate', async () => {
    const keys = service({ verification: { refusalsPerSecond: 1, failureDelayMs: 300 } });
    const first = await timed(keys.verify(generateKey().rawKey));
    expect(first.value).toEqual({ ok: false, reason: 'unknown_key' });
    expect(first.ms).toBeLessThan(150);
    const held = await timed(keys.verify(generateKey().rawKey));
    expect(held.value).toEqual({ ok: false, reason: 'unknown_key' });
    expect(held.ms).toBeGreaterThanOrEqual(290);
  });

  it('holds refusals served from the negative cache too, but never a malformed key', async () => {
    const keys = service({ verification: { refusalsPerSecond: 1, failureDelayMs: 300 } });
    const unknown = generateKey().rawKey;
    await keys.verify(unknown);
    expect((await timed(keys.verify(unknown))).ms).toBeGreaterThanOrEqual(290);
    const typo = `${unknown.slice(0, -1)}${unknown.endsWith('a') ? 'b' : 'a'}`;
    const malformed = await timed(keys.verify(typo));
    expect(malformed.value).toEqual({ ok: false, reason: 'malformed' });
    expect(malformed.ms).toBeLessThan(150);
  });

  it('a held refusal keeps cached keys answering meanwhile', async () => {
    const keys = service({ verification: { refusalsPerSecond: 1, failureDelayMs: 400 } });
    const { rawKey } = await keys.create('acct_1', 'k');
    await keys.verify(rawKey);
    await keys.verify(generateKey().rawKey);
    const held = keys.verify(generateKey().rawKey);
    const cached = await timed(keys.verify(rawKey));
    expect(cached.value.ok).toBe(true);
    expect(cached.ms).toBeLessThan(100);
    expect(await held).toMatchObject({ ok: false });
  });

  it('failureDelayMs 0 turns the delay off', async () => {
    const keys = service({ verification: { refusalsPerSecond: 1, failureDelayMs: 0 } });
    const started = performance.now();
    for (let i = 0; i < 5; i++) await keys.verify(generateKey().rawKey);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('rejects a negative delay and a zero rate', () => {
    expect(() =>
      createKeyService({ store: memoryStore(), verification: { failureDelayMs: -1 } }),
    ).toThrow(/failureDelayMs/);
    expect(() =>
      createKeyService({ store: memoryStore(), verification: { refusalsPerSecond: 0 } }),
    ).toThrow(/refusalsPerSecond/);
  });
});

describe('key service: the failure budget under a burst', () => {
  it('a burst of wrong secrets for one lookup runs argon2 at most maxFailures times', async () => {
    const keys = service({ verification: { maxFailures: 3, failureDelayMs: 0 } });
    const { rawKey } = await keys.create('acct_1', 'k');
    const results = await Promise.all(
      Array.from({ length: 20 }, () => keys.verify(wrongSecretFor(rawKey))),
    );
    const reasons = results.map((r) => (r.ok ? 'ok' : r.reason));
    expect(reasons.filter((r) => r === 'wrong_secret')).toHaveLength(3);
    expect(reasons.filter((r) => r === 'too_many_failures')).toHaveLength(17);
  });

  it('a key that verifies gives its attempt back: the budget counts failures only', async () => {
    const keys = service({ verification: { maxFailures: 2, failureDelayMs: 0 } });
    const { rawKey } = await keys.create('acct_1', 'k');
    expect((await keys.verify(wrongSecretFor(rawKey))).ok).toBe(false);
    expect((await keys.verify(rawKey)).ok).toBe(true);
    expect(await keys.verify(wrongSecretFor(rawKey))).toEqual({
      ok: false,
      reason: 'wrong_secret',
    });
    expect(await keys.verify(wrongSecretFor(rawKey))).toEqual({
      ok: false,
      reason: 'too_many_failures',
    });
  });

  it('verifying many valid keys does not push a failing lookup out of the budget', async () => {
    const keys = service({
      negativeCache: { max: 3 },
      verification: { maxFailures: 2, failureDelayMs: 0 },
    });
    const target = await keys.create('acct_1', 'target');
    await keys.verify(wrongSecretFor(target.rawKey));
    await keys.verify(wrongSecretFor(target.rawKey));
    for (let i = 0; i < 6; i++) {
      const { rawKey } = await keys.create('acct_1', `valid ${i}`);
      expect((await keys.verify(rawKey)).ok).toBe(true);
    }
    expect(await keys.verify(target.rawKey)).toEqual({ ok: false, reason: 'too_many_failures' });
  });
});

describe('key service: the cached result', () => {
  it('is one frozen object per key, so a host cannot alter what later requests see', async () => {
    const keys = service();
    const { rawKey } = await keys.create('acct_1', 'k');
    const first = await keys.verify(rawKey);
    const second = await keys.verify(rawKey);
    if (!first.ok || !second.ok) throw new Error('the key should verify');
    expect(second.key).toBe(first.key);
    expect(Object.isFrozen(first.key)).toBe(true);
    expect(() => {
      (first.key as { ownerId: string }).ownerId = 'acct_2';
    }).toThrow(TypeError);
    expect(second.key.ownerId).toBe('acct_1');
  });

  it('refuses a header far too long for a key without hashing it', async () => {
    const keys = service();
    expect(await keys.verify('x'.repeat(16_000))).toEqual({ ok: false, reason: 'malformed' });
  });

  it('records lastUsedAt from the service clock (`now`), in epoch ms behind the scenes', async () => {
    let clock = new Date('2024-03-14T10:30:00.000Z');
    const written: LastUsedUpdate[] = [];
    const inner = memoryStore();
    const store: KeyStore = {
      ...inner,
      recordLastUsed: async (updates) => {
        written.push(...updates);
        await inner.recordLastUsed(updates);
      },
    };
    const keys = service({ store, now: () => clock, lastUsedFlushIntervalMs: 60_000 });
    const { rawKey, id } = await keys.create('acct_1', 'k');
    await keys.verify(rawKey);
    clock = new Date('2024-03-14T10:30:05.000Z');
    await keys.verify(rawKey);
    expect((await keys.list('acct_1'))[0]?.lastUsedAt).toEqual(clock);
    await keys.flushLastUsed();
    expect(written).toEqual([{ id, lastUsedAt: new Date('2024-03-14T10:30:05.000Z') }]);
  });
});

describe('LastUsedWriter', () => {
  it('takes Dates or epoch ms, keeps the latest, and hands the store Dates', async () => {
    const batches: LastUsedUpdate[][] = [];
    const store = {
      ...memoryStore(),
      recordLastUsed: async (updates: readonly LastUsedUpdate[]) => {
        batches.push([...updates]);
      },
    };
    const writer = new LastUsedWriter(store, 60_000, () => {});
    writer.record('key_a', 2000);
    writer.record('key_a', new Date(1000));
    writer.record('key_b', new Date(5000));
    expect(writer.pendingFor('key_a')).toEqual(new Date(2000));
    expect(writer.pendingFor('key_c')).toBeUndefined();
    await writer.close();
    expect(batches).toEqual([
      [
        { id: 'key_a', lastUsedAt: new Date(2000) },
        { id: 'key_b', lastUsedAt: new Date(5000) },
      ],
    ]);
  });
});
