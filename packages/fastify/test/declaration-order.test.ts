import { createKeyService, type KeyService, memoryStore } from '@keyward/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { keyward, requireApiKey } from '../src/index.js';

// A guard must hold whatever order a Fastify app declares things in. Each case builds an
// app its own way and names the guarded path; every one must answer 401 without a key (and
// with a wrong one) and 200 with a valid key.

interface Built {
  app: FastifyInstance;
  path: string;
}
type Build = (service: KeyService) => Promise<Built>;

const handler = async (request: { apiKey: { id: string } | null }) => ({ id: request.apiKey?.id });
const guarded = { config: { apiKey: true } } as const;

const orders: Array<[string, Build]> = [
  [
    'a route declared on the root before register',
    async (service) => {
      const app = Fastify();
      app.get('/early', guarded, handler);
      await app.register(keyward, { service });
      return { app, path: '/early' };
    },
  ],
  [
    'register not awaited, then the routes, then ready()',
    async (service) => {
      const app = Fastify();
      app.register(keyward, { service });
      app.get('/late', guarded, handler);
      return { app, path: '/late' };
    },
  ],
  [
    'a route inside a plugin registered (awaited) before keyward',
    async (service) => {
      const app = Fastify();
      await app.register(async (scope) => {
        scope.get('/sibling', guarded, handler);
      });
      await app.register(keyward, { service });
      return { app, path: '/sibling' };
    },
  ],
  [
    'a route inside a plugin registered (not awaited) before keyward',
    async (service) => {
      const app = Fastify();
      app.register(async (scope) => {
        scope.get('/sibling', guarded, handler);
      });
      app.register(keyward, { service });
      return { app, path: '/sibling' };
    },
  ],
  [
    'a route inside a plugin registered after keyward',
    async (service) => {
      const app = Fastify();
      await app.register(keyward, { service });
      await app.register(async (scope) => {
        scope.get('/sibling', guarded, handler);
      });
      return { app, path: '/sibling' };
    },
  ],
  [
    'nested prefixes registered before keyward',
    async (service) => {
      const app = Fastify();
      app.register(
        async (api) => {
          api.register(
            async (v2) => {
              v2.get('/things', guarded, handler);
            },
            { prefix: '/v2' },
          );
        },
        { prefix: '/api' },
      );
      app.register(keyward, { service });
      return { app, path: '/api/v2/things' };
    },
  ],
  [
    'nested prefixes registered after keyward',
    async (service) => {
      const app = Fastify();
      await app.register(keyward, { service });
      await app.register(
        async (api) => {
          await api.register(
            async (v2) => {
              v2.get('/things', guarded, handler);
            },
            { prefix: '/v2' },
          );
        },
        { prefix: '/api' },
      );
      return { app, path: '/api/v2/things' };
    },
  ],
  [
    'app.route({...}) before register',
    async (service) => {
      const app = Fastify();
      app.route({ method: 'GET', url: '/routed', config: { apiKey: true }, handler });
      await app.register(keyward, { service });
      return { app, path: '/routed' };
    },
  ],
  [
    'the onRequest: fastify.requireApiKey form, after register',
    async (service) => {
      const app = Fastify();
      await app.register(keyward, { service });
      app.get('/hooked', { onRequest: app.requireApiKey }, handler);
      return { app, path: '/hooked' };
    },
  ],
  [
    'the exported requireApiKey hook, declared before register in a sibling plugin',
    async (service) => {
      const app = Fastify();
      app.register(async (scope) => {
        scope.get('/hooked', { onRequest: requireApiKey }, handler);
      });
      app.register(keyward, { service });
      return { app, path: '/hooked' };
    },
  ],
  [
    'both the route option and the hook on one route',
    async (service) => {
      const app = Fastify();
      await app.register(keyward, { service });
      app.get('/both', { ...guarded, onRequest: [app.requireApiKey] }, handler);
      return { app, path: '/both' };
    },
  ],
  [
    'keyward inside a scope, the route declared in that scope before it',
    async (service) => {
      const app = Fastify();
      app.register(async (scope) => {
        scope.get('/scoped', guarded, handler);
        scope.register(keyward, { service });
      });
      return { app, path: '/scoped' };
    },
  ],
];

let running: { app: FastifyInstance; service: KeyService } | undefined;
afterEach(async () => {
  await running?.app.close();
  await running?.service.close();
  running = undefined;
});

describe.each(orders)('fastify guard order: %s', (_name, build) => {
  it('answers 401 without a key or with a wrong one, and 200 with a valid key', async () => {
    const service = createKeyService({ store: memoryStore() });
    const { app, path } = await build(service);
    running = { app, service };
    await app.ready();
    const { rawKey, id } = await service.create('acct_order', 'order');

    const missing = await app.inject({ url: path });
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toMatchObject({ success: false, error: { code: 'missing_api_key' } });
    // Fastify's automatic HEAD route for the GET is guarded too.
    expect((await app.inject({ method: 'HEAD', url: path })).statusCode).toBe(401);
    const wrong = await app.inject({ url: path, headers: { 'x-api-key': `${rawKey}x` } });
    expect(wrong.statusCode).toBe(401);
    const ok = await app.inject({ url: path, headers: { 'x-api-key': rawKey } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ id });
    // The warm path (a cached key) answers the same.
    const again = await app.inject({ url: path, headers: { 'x-api-key': rawKey } });
    expect(again.json()).toEqual({ id });
  });
});

describe('fastify guard outside keyward scope', () => {
  it('a route asking for a key where no keyward is in scope fails closed with a 500, never serves', async () => {
    const service = createKeyService({ store: memoryStore() });
    const app = Fastify();
    running = { app, service };
    const logged: string[] = [];
    app.log.error = (...args: unknown[]) => {
      logged.push(args.map(String).join(' '));
    };
    let served = 0;
    app.get('/outside', guarded, async () => {
      served++;
      return { served };
    });
    app.get('/outside-hooked', { onRequest: requireApiKey }, async () => {
      served++;
      return { served };
    });
    app.register(async (scope) => {
      await scope.register(keyward, { service });
    });
    await app.ready();
    const { rawKey } = await service.create('acct_scope', 'scope');
    for (const url of ['/outside', '/outside-hooked']) {
      for (const headers of [{}, { 'x-api-key': rawKey }]) {
        const res = await app.inject({ url, headers });
        expect(res.statusCode).toBe(500);
        expect(res.json()).toMatchObject({ success: false, error: { code: 'internal_error' } });
      }
    }
    expect(served).toBe(0);
    expect(logged.join('\n')).toContain('no keyward plugin is registered in its scope');
  });

  it('routes without the option stay public, and unknown paths still get a 404', async () => {
    const service = createKeyService({ store: memoryStore() });
    const app = Fastify();
    running = { app, service };
    app.get('/public', async () => ({ ok: true }));
    app.register(keyward, { service });
    await app.ready();
    expect((await app.inject({ url: '/public' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/nowhere' })).statusCode).toBe(404);
  });
});
