import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PositiveCache } from '../src/positive-cache.js';

const result = (id: string) => ({ ok: true as const, key: { id, ownerId: 'acct_1' } });

function cache(options: { max?: number; ttlMs?: number } = {}) {
  const uses: Array<[string, number]> = [];
  const c = new PositiveCache<ReturnType<typeof result>>({
    max: options.max ?? 100,
    ttlMs: options.ttlMs ?? 60_000,
    onUse: (id, at) => uses.push([id, at]),
  });
  return { c, uses };
}

describe('PositiveCache', () => {
  it('passes a use on once per key and millisecond', () => {
    const { c, uses } = cache();
    c.set('d1', result('key_1'), 1_000);
    for (let i = 0; i < 5; i++) expect(c.get('d1', 2_000)?.key.id).toBe('key_1');
    c.get('d1', 2_001);
    expect(c.get('d2', 2_001)).toBeUndefined();
    expect(uses).toEqual([
      ['key_1', 2_000],
      ['key_1', 2_001],
    ]);
  });

  it('deleteKey drops the entry by key id, also after it was evicted and cached again', () => {
    const { c } = cache({ max: 1 });
    c.set('d1', result('key_1'), 0);
    c.set('d2', result('key_2'), 0); // evicts d1
    c.set('d1', result('key_1'), 0); // evicts d2
    c.deleteKey('key_1');
    expect(c.get('d1', 1)).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('after close() nothing is served and nothing more is cached', async () => {
    const { c } = cache({ ttlMs: 50 });
    c.set('d1', result('key_1'), 0);
    c.close();
    expect(c.get('d1', 1)).toBeUndefined();
    c.set('d2', result('key_2'), 0);
    expect(c.get('d2', 1)).toBeUndefined();
    await sleep(80);
    expect(c.size).toBe(0);
  });

  it('clear() empties it and it keeps caching, and expiring, what comes after', async () => {
    const { c } = cache({ ttlMs: 50 });
    c.set('d1', result('key_1'), 0);
    c.clear();
    expect(c.get('d1', 1)).toBeUndefined();
    expect([c.size, c.queued]).toEqual([0, 0]);
    c.set('d2', result('key_2'), 0);
    expect(c.get('d2', 1)?.key.id).toBe('key_2');
    c.deleteKey('key_1'); // the cleared entry's id leads nowhere
    expect(c.size).toBe(1);
    await sleep(80);
    expect(c.size).toBe(0);
  });

  it('the expiry queue stays near the cache size under churn, however long the TTL', () => {
    const { c } = cache({ max: 10, ttlMs: 3_600_000 });
    for (let i = 0; i < 20_000; i++) c.set(`d${i}`, result(`key_${i}`), 0);
    expect(c.size).toBe(10);
    expect(c.queued).toBeLessThanOrEqual(2 * 10 + 1024 + 1);
    // The live entries are still in it, and still served.
    expect(c.get('d19999', 1)?.key.id).toBe('key_19999');
    c.close();
  });
});
