import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/memory-store.js';
import type { KeyStore } from '../src/store.js';
import { service } from './test-fixtures.js';

describe('key service: a cascade revocation racing a create by the revoked key', () => {
  it('a key whose creator was cascade-revoked while it was being made is removed, and the create refused', async () => {
    const inner = memoryStore();
    // Holds each insert until the test lets it through, so the cascade lands in between.
    let releaseInsert: () => void = () => {};
    let insertHeld: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      insertHeld = resolve;
    });
    let holdInserts = false;
    const store: KeyStore = {
      ...inner,
      insert: async (key, options) => {
        if (holdInserts) {
          insertHeld();
          await new Promise<void>((resolve) => {
            releaseInsert = resolve;
          });
        }
        return inner.insert(key, options);
      },
    };
    const keys = service({ store });
    const parent = await keys.create('acct_1', 'leaked');
    holdInserts = true;
    const minting = keys.create('acct_1', 'minted', { createdBy: parent.id });
    await held;
    expect(await keys.revokeCascade('acct_1', parent.id)).toEqual([parent.id]);
    releaseInsert();
    await expect(minting).rejects.toMatchObject({ code: 'invalid_api_key' });
    // Nothing the leaked key minted survives its cascade.
    expect(inner.snapshot().filter((k) => k.createdBy === parent.id)).toEqual([]);
    expect(await keys.list('acct_1')).toEqual([]);
  });

  it('a create by a live key is unaffected', async () => {
    const keys = service();
    const parent = await keys.create('acct_1', 'parent');
    const child = await keys.create('acct_1', 'child', { createdBy: parent.id });
    expect(child.createdBy).toBe(parent.id);
    expect((await keys.verify(child.rawKey)).ok).toBe(true);
  });

  it('rolling a key whose creator was revoked alone (not by cascade) still works', async () => {
    const keys = service();
    const parent = await keys.create('acct_1', 'parent');
    const child = await keys.create('acct_1', 'child', { createdBy: parent.id });
    await keys.revoke('acct_1', parent.id);
    const next = await keys.roll('acct_1', child.id, { expiresIn: 0 });
    expect(next?.createdBy).toBe(parent.id);
    expect((await keys.verify(next?.rawKey as string)).ok).toBe(true);
  });
});
