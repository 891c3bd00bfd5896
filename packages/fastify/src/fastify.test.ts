import { createKeyService, memoryStore } from '@keyward/core';
import { describeHttpContract } from '@keyward/testing';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { keyward, keywardFrameworkErrors } from './index.js';

describeHttpContract('fastify', {
  async startServer({ service, guardedPath }) {
    const app = Fastify({ frameworkErrors: keywardFrameworkErrors });
    await app.register(keyward, { service });
    app.get(guardedPath, { config: { apiKey: true } }, async (request) => ({
      apiKey: request.apiKey,
    }));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url, close: () => app.close() };
  },
});

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
