import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/memory-store.js';
import { createKeyService } from '../src/service.js';
import { type KeyStore, StoreMisconfiguredError } from '../src/store.js';
import { StoreUnavailableError } from '../src/store-check.js';

const withCheck = (check: () => Promise<void>): KeyStore => ({ ...memoryStore(), check });

describe('service.ready() runs the store check', () => {
  it('resolves for a store without check() and for a healthy one', async () => {
    const { check: _, ...noCheck } = memoryStore();
    await expect(createKeyService({ store: noCheck }).ready()).resolves.toBeUndefined();
    await expect(createKeyService({ store: memoryStore() }).ready()).resolves.toBeUndefined();
  });

  it('passes a configuration error through as it is', async () => {
    const error = new StoreMisconfiguredError('keyward: table "t" does not exist; run migrate');
    const service = createKeyService({ store: withCheck(async () => Promise.reject(error)) });
    await expect(service.ready()).rejects.toBe(error);
  });

  it('reports any other failure as an outage, with the cause kept', async () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
      code: 'ECONNREFUSED',
    });
    const service = createKeyService({ store: withCheck(async () => Promise.reject(cause)) });
    const failure = service.ready();
    await expect(failure).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(failure).rejects.toMatchObject({
      code: 'store_unavailable',
      cause,
      message: expect.stringMatching(/ECONNREFUSED.*down or unreachable, not misconfigured/),
    });
  });

  it('gives up after storeTimeoutMs on a check that never answers', async () => {
    const service = createKeyService({
      store: withCheck(() => new Promise(() => {})),
      storeTimeoutMs: 50,
    });
    await expect(service.ready()).rejects.toThrow(/timed out after 50 ms/);
  });
});
