import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { memoryBus } from '../src/bus.js';
import { memoryStore } from '../src/memory-store.js';
import type { KeyStore } from '../src/store.js';
import { service } from './test-fixtures.js';

describe('key service: a revoke the store answers late or not at all', () => {
  it('a delete slower than storeTimeoutMs: 503, yet the key leaves both instances’ caches, and again once the delete lands', async () => {
    const inner = memoryStore();
    let stallMs = 0;
    let landed = false;
    const store: KeyStore = {
      ...inner,
      delete: async (ownerId, id) => {
        await sleep(stallMs);
        const deleted = await inner.delete(ownerId, id);
        landed = true;
        return deleted;
      },
    };
    const bus = memoryBus();
    const a = service({ store, bus, storeTimeoutMs: 50 });
    const b = service({ store, bus, storeTimeoutMs: 50 });
    await Promise.all([a.ready(), b.ready()]);
    const { rawKey, id } = await a.create('acct_1', 'k');
    for (const s of [a, b]) expect((await s.verify(rawKey)).ok).toBe(true);

    stallMs = 300;
    await expect(a.revoke('acct_1', id)).rejects.toMatchObject({ code: 'service_unavailable' });
    expect(landed).toBe(false);
    for (const s of [a, b]) expect(s.verifyCached(rawKey)).toBeUndefined();

    // Until the delete lands the key is still in the store: verified (and cached) again.
    for (const s of [a, b]) expect((await s.verify(rawKey)).ok).toBe(true);
    while (!landed) await sleep(10);
    await sleep(10);
    for (const s of [a, b]) {
      expect(s.verifyCached(rawKey)).toBeUndefined();
      expect(await s.verify(rawKey)).toEqual({ ok: false, reason: 'unknown_key' });
    }
  });

  it('a delete that fails outright: 503, and the key leaves both instances’ caches', async () => {
    const { a, b, deleteFails } = await twoInstancesWhoseDeleteCanFail();
    const { rawKey, id } = await a.create('acct_1', 'k');
    for (const s of [a, b]) expect((await s.verify(rawKey)).ok).toBe(true);
    deleteFails();
    await expect(a.revoke('acct_1', id)).rejects.toMatchObject({ code: 'service_unavailable' });
    for (const s of [a, b]) expect(s.verifyCached(rawKey)).toBeUndefined();
  });

  it('a failed revoke naming another account’s key id evicts that key nowhere', async () => {
    const { a, b, deleteFails } = await twoInstancesWhoseDeleteCanFail();
    const victim = await a.create('acct_victim', 'k');
    for (const s of [a, b]) expect((await s.verify(victim.rawKey)).ok).toBe(true);
    deleteFails();
    // While the store is down nobody can check who owns the id: the attacker's revoke
    // fails, and the victim's key stays cached (served) on both instances.
    await expect(a.revoke('acct_attacker', victim.id)).rejects.toMatchObject({
      code: 'service_unavailable',
    });
    for (const s of [a, b]) expect(s.verifyCached(victim.rawKey)?.id).toBe(victim.id);
    // The owner's own failed revoke still drops it everywhere.
    await expect(a.revoke('acct_victim', victim.id)).rejects.toMatchObject({
      code: 'service_unavailable',
    });
    for (const s of [a, b]) expect(s.verifyCached(victim.rawKey)).toBeUndefined();
  });
});

/** Two instances on one store and one bus, and a switch after which every delete of the
 * store fails outright. */
async function twoInstancesWhoseDeleteCanFail() {
  const inner = memoryStore();
  let down = false;
  const store: KeyStore = {
    ...inner,
    delete: (ownerId, id) =>
      down ? Promise.reject(new Error('ECONNRESET')) : inner.delete(ownerId, id),
  };
  const bus = memoryBus();
  const a = service({ store, bus });
  const b = service({ store, bus });
  await Promise.all([a.ready(), b.ready()]);
  return {
    a,
    b,
    deleteFails: () => {
      down = true;
    },
  };
}
