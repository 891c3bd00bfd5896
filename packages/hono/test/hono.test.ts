import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { type AuthenticatedKey, createKeyService, memoryStore } from '@keyward/core';
import { describeHttpContract, describeSessionContract } from '@keyward/testing';
import { Hono } from 'hono';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { startServer } from '../../../test/support/servers.js';
import { keyward } from '../src/index.js';

async function listen(app: Hono): Promise<{ url: string; close(): Promise<void> }> {
  // As the README advises: Node discards a body keyward left unread (see there).
  const server = serve({
    fetch: app.fetch,
    port: 0,
    hostname: '127.0.0.1',
    autoCleanupIncoming: false,
  });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        if ('closeAllConnections' in server) server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describeHttpContract('hono', {
  startServer({ service, guardedPath, scopedPath, scopes }) {
    const app = new Hono();
    const auth = keyward({ service });
    app.use(auth.routes);
    app.get(guardedPath, auth.requireApiKey(), (c) => c.json({ apiKey: c.get('apiKey') }));
    app.get(scopedPath, auth.requireApiKey({ scopes }), (c) => c.json({ apiKey: c.get('apiKey') }));
    return listen(app);
  },
});

describeSessionContract('hono', { startServer: startServer.hono });

describe('hono: the guard and the routes in a host app', () => {
  it("types c.get('apiKey') as the authenticated key, and leaves other routes to the host", async () => {
    const service = createKeyService({
      store: memoryStore(),
      argon2: { memoryCost: 1024, timeCost: 1, parallelism: 1, allowWeakParameters: true },
    });
    const { rawKey, id } = await service.create('acct_1', 'bootstrap');
    const app = new Hono();
    const auth = keyward({ service });
    app.use(auth.routes);
    app.get('/v1/me', auth.requireApiKey(), (c) => {
      const key = c.get('apiKey');
      expectTypeOf(key).toEqualTypeOf<AuthenticatedKey>();
      return c.json({ owner: key.ownerId, id: key.id });
    });
    app.get('/open', (c) => c.text('open'));
    const server = await listen(app);
    try {
      const me = await fetch(`${server.url}/v1/me`, { headers: { 'X-API-Key': rawKey } });
      expect(await me.json()).toEqual({ owner: 'acct_1', id });
      const open = await fetch(`${server.url}/open`);
      expect(await open.text()).toBe('open');
      const unknown = await fetch(`${server.url}/v1/api-keys-not-ours`);
      expect(unknown.status).toBe(404);
      expect(await unknown.text()).toBe('404 Not Found');
    } finally {
      await server.close();
      await service.close();
    }
  });
});

describe('hono: a middleware that read the body before keyward', () => {
  it('answers 500 and tells onError to mount the routes first, instead of a bare TypeError', async () => {
    const errors: unknown[] = [];
    const service = createKeyService({
      store: memoryStore(),
      argon2: { memoryCost: 1024, timeCost: 1, parallelism: 1, allowWeakParameters: true },
      onError: (error) => errors.push(error),
    });
    const { rawKey } = await service.create('acct_1', 'bootstrap');
    const app = new Hono();
    app.use(async (c, next) => {
      if (c.req.method === 'POST') await c.req.json();
      await next();
    });
    app.use(keyward({ service }).routes);
    const server = await listen(app);
    try {
      const res = await fetch(`${server.url}/v1/api-keys`, {
        method: 'POST',
        headers: { 'X-API-Key': rawKey, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'read too early' }),
      });
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({
        success: false,
        error: { code: 'internal_error', message: 'An internal error occurred.' },
      });
      expect(String(errors[0])).toMatch(/already read.*Mount the router first/);
      expect(await service.list('acct_1')).toHaveLength(1);
    } finally {
      await server.close();
      await service.close();
    }
  });
});

describe('hono: keyward in a sub-app under app.mount()', () => {
  it('serves the routes at the path the sub-app sees, not the raw target Node received', async () => {
    const service = createKeyService({
      store: memoryStore(),
      argon2: { memoryCost: 1024, timeCost: 1, parallelism: 1, allowWeakParameters: true },
    });
    const { rawKey } = await service.create('acct_m', 'bootstrap');
    const admin = new Hono();
    admin.use(keyward({ service }).routes);
    const app = new Hono();
    app.mount('/admin', admin.fetch);
    const server = await listen(app);
    try {
      const list = await fetch(`${server.url}/admin/v1/api-keys`, {
        headers: { 'X-API-Key': rawKey },
      });
      expect(list.status).toBe(200);
    } finally {
      await server.close();
      await service.close();
    }
  });
});

describe('hono: a limited key’s RateLimit fields', () => {
  const limitedApp = async () => {
    const service = createKeyService({
      store: memoryStore(),
      argon2: { memoryCost: 1024, timeCost: 1, parallelism: 1, allowWeakParameters: true },
    });
    const { rawKey } = await service.create('acct_1', 'limited', {
      rateLimit: { limit: 5, windowSec: 60 },
    });
    const app = new Hono();
    const auth = keyward({ service });
    app.use(auth.routes);
    // The handler's own status and headers stand beside keyward's fields.
    app.get('/v1/made', auth.requireApiKey(), (c) =>
      c.json({ made: true }, 201, { 'x-host': 'kept' }),
    );
    return { service, rawKey, app };
  };
  const expectFields = (headers: Headers, remaining: number) => {
    expect(headers.get('ratelimit-policy')).toBe('"window";q=5;w=60');
    expect(headers.get('ratelimit')).toMatch(new RegExp(`^"window";r=${remaining};t=\\d+$`));
    expect(headers.get('x-host')).toBe('kept');
    expect(headers.get('content-type')).toMatch(/^application\/json/);
  };

  it('on node-server, go onto Node’s response and merge with what the handler answers', async () => {
    const { service, rawKey, app } = await limitedApp();
    const server = await listen(app);
    try {
      for (const remaining of [4, 3]) {
        const res = await fetch(`${server.url}/v1/made`, { headers: { 'X-API-Key': rawKey } });
        expect(res.status).toBe(201);
        expect(await res.json()).toEqual({ made: true });
        expectFields(res.headers, remaining);
      }
      // An unlimited route on the same server gets none of them (no carry-over).
      const open = await fetch(`${server.url}/v1/api-keys`, { headers: { 'X-API-Key': 'x' } });
      expect(open.headers.get('ratelimit')).toBeNull();
    } finally {
      await server.close();
      await service.close();
    }
  });

  it('elsewhere (no Node response, as on Bun, Deno or Workers), come through c.header()', async () => {
    const { service, rawKey, app } = await limitedApp();
    try {
      const res = await app.request('/v1/made', { headers: { 'X-API-Key': rawKey } });
      expect(res.status).toBe(201);
      expectFields(res.headers, 4);
    } finally {
      await service.close();
    }
  });
});
