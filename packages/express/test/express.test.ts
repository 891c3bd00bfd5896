import type { AddressInfo } from 'node:net';
import { createKeyService, memoryStore } from '@keyward/core';
import { CHEAP_ARGON2, describeHttpContract, describeSessionContract } from '@keyward/testing';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { startServer } from '../../../test/support/servers.js';
import { keyward } from '../src/index.js';

describeHttpContract('express', { startServer: startServer.express });
describeSessionContract('express', { startServer: startServer.express });

describe('express: a body parser mounted before the router', () => {
  it('answers 500 and tells onError to mount the router first, instead of blaming the JSON', async () => {
    const errors: unknown[] = [];
    const service = createKeyService({
      store: memoryStore(),
      argon2: CHEAP_ARGON2,
      onError: (error) => errors.push(error),
    });
    const { rawKey } = await service.create('acct_1', 'bootstrap');
    const app = express();
    app.use(express.json());
    app.use(keyward({ service }).router);
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/v1/api-keys`, {
        method: 'POST',
        headers: { 'X-API-Key': rawKey, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'parsed too early' }),
      });
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({
        success: false,
        error: { code: 'internal_error', message: 'An internal error occurred.' },
      });
      expect(String(errors[0])).toMatch(/already read.*body parser.*Mount the router first/);
      expect(await service.list('acct_1')).toHaveLength(1);
    } finally {
      server.close();
      await service.close();
    }
  });
});
