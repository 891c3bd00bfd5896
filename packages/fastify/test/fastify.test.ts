import { createKeyService, memoryStore } from '@keyward/core';
import { describeHttpContract, describeSessionContract } from '@keyward/testing';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { startServer } from '../../../test/support/servers.js';
import { keyward } from '../src/index.js';

describeHttpContract('fastify', { startServer: startServer.fastify });
describeSessionContract('fastify', { startServer: startServer.fastify });

describe('fastify guard: host hooks that throw', () => {
  it('a throw on the slow path becomes one 500 from Fastify, and the server keeps serving', async () => {
    const service = createKeyService({
      store: memoryStore(),
      onInvalidKey() {
        throw new Error('host logger down');
      },
      onError() {
        throw new Error('host error reporter down');
      },
    });
    const app = Fastify();
    app.log.error = () => {}; // the 500 is logged; keep the test output quiet
    await app.register(keyward, { service });
    app.get('/guarded', { config: { apiKey: true } }, async () => ({ ok: true }));
    try {
      const bad = await app.inject({ url: '/guarded', headers: { 'x-api-key': 'rep_nope' } });
      expect(bad.statusCode).toBe(500);
      const missing = await app.inject({ url: '/guarded' });
      expect(missing.statusCode).toBe(401);
    } finally {
      await app.close();
      await service.close();
    }
  });
});

describe('fastify plugin: closeService', () => {
  // A flush interval no test reaches: lastUsedAt is written only by a close.
  const options = { lastUsedFlushIntervalMs: 3_600_000 };

  async function useKeyThenClose(closeService: boolean) {
    const store = memoryStore();
    const service = createKeyService({ store, ...options });
    const app = Fastify();
    await app.register(keyward, { service, closeService });
    app.get('/guarded', { config: { apiKey: true } }, async () => ({ ok: true }));
    const { rawKey } = await service.create('acct_close', 'close');
    const used = await app.inject({ url: '/guarded', headers: { 'x-api-key': rawKey } });
    expect(used.statusCode).toBe(200);
    const [before] = await store.listByOwner('acct_close');
    expect(before?.lastUsedAt).toBeNull();
    await app.close();
    const [after] = await store.listByOwner('acct_close');
    return { service, lastUsedAt: after?.lastUsedAt ?? null };
  }

  it('with closeService: true, app.close() closes the service and writes the pending lastUsedAt', async () => {
    const { lastUsedAt } = await useKeyThenClose(true);
    expect(lastUsedAt).toBeInstanceOf(Date);
  });

  it('by default, app.close() leaves the service open to its owner', async () => {
    const { service, lastUsedAt } = await useKeyThenClose(false);
    expect(lastUsedAt).toBeNull();
    await service.close();
  });
});
