import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createKeyService, memoryStore } from '@keyward/core';
import { CHEAP_ARGON2, describeHttpContract } from '@keyward/testing';
import { describe, expect, it } from 'vitest';
import { createFetchHandler, type KeywardFetch, withLimitHeaders } from '../src/index.js';

/** A host with no framework at all: one fetch function, served by Node through
 * @hono/node-server's Request/Response bridge. */
function hostFetch(
  auth: KeywardFetch,
  routes: Record<string, readonly string[]>,
): (request: Request) => Promise<Response> {
  return async (request) => {
    const answer = await auth.handle(request);
    if (answer) return answer;
    const scopes = routes[new URL(request.url).pathname];
    if (scopes === undefined || request.method !== 'GET') {
      return new Response('not found', { status: 404 });
    }
    const verdict = await auth.guard(request, { scopes });
    if (!verdict.ok) return verdict.response;
    return Response.json({ apiKey: verdict.key });
  };
}

async function listen(fetch: (request: Request) => Promise<Response>) {
  const server = serve({ fetch, port: 0, hostname: '127.0.0.1' });
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

describeHttpContract('fetch', {
  startServer({ service, guardedPath, scopedPath, scopes }) {
    const auth = createFetchHandler({ service });
    return listen(hostFetch(auth, { [guardedPath]: [], [scopedPath]: scopes }));
  },
});

describe('fetch: the handler on Request and Response alone', () => {
  const service = createKeyService({
    store: memoryStore(),
    argon2: { memoryCost: 1024, timeCost: 1, parallelism: 1, allowWeakParameters: true },
  });

  it('answers null outside the mount path, so the host serves it', async () => {
    const auth = createFetchHandler({ service });
    expect(await auth.handle(new Request('http://h/v1/api-keys-other'))).toBeNull();
    expect(await auth.handle(new Request('http://h/'))).toBeNull();
    const answer = await auth.handle(new Request('http://h/v1/api-keys?x=1'));
    expect(answer?.status).toBe(401);
  });

  it('reads a JSON body from a Request built in-process, once the key is verified', async () => {
    const auth = createFetchHandler({ service, mountPath: '/keys' });
    const { rawKey } = await service.create('acct_f', 'bootstrap');
    const created = await auth.handle(
      new Request('http://h/keys', {
        method: 'POST',
        headers: { 'X-API-Key': rawKey, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'made in-process' }),
      }),
    );
    expect(created?.status).toBe(201);
    expect(created?.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const body = (await created?.json()) as { data: { name: string } };
    expect(body.data.name).toBe('made in-process');
  });

  it('guard: the key with its scopes, or the 401/403 to send', async () => {
    const auth = createFetchHandler({ service });
    const { rawKey } = await service.create('acct_g', 'orders', { scopes: ['orders:read'] });
    const ok = await auth.guard(new Request('http://h/x', { headers: { 'x-api-key': rawKey } }));
    expect(ok.ok && ok.key.ownerId).toBe('acct_g');
    const scoped = await auth.guard(
      new Request('http://h/x', { headers: { 'x-api-key': rawKey } }),
      { scopes: ['orders:write'] },
    );
    expect(scoped.ok || scoped.response.status).toBe(403);
    const missing = await auth.guard(new Request('http://h/x'));
    expect(missing.ok || missing.response.status).toBe(401);
    expect(missing.ok || missing.response.headers.get('www-authenticate')).toBe(
      'ApiKey header="X-API-Key"',
    );
  });
  it('guard: a route cost spends that many units; the fields go on the answer with withLimitHeaders', async () => {
    const auth = createFetchHandler({ service });
    const { rawKey } = await service.create('acct_cost', 'metered', {
      rateLimit: { limit: 10, windowSec: 3600 },
    });
    const request = () => new Request('http://h/x', { headers: { 'x-api-key': rawKey } });
    const first = await auth.guard(request(), { cost: 6 });
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    expect(first.headers?.['RateLimit-Policy']).toBe('"window";q=10;w=3600');
    const answer = withLimitHeaders(Response.json({ ok: true }), first);
    expect(answer.headers.get('ratelimit')).toMatch(/^"window";r=4;t=\d+$/);
    const refused = await auth.guard(request(), { cost: 6 });
    expect(refused.ok || refused.response.status).toBe(429);
    expect(refused.ok || refused.response.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(refused.ok || refused.response.headers.get('ratelimit')).toMatch(/^"window";r=4;t=/);
    expect((await auth.guard(request(), { cost: 4 })).ok).toBe(true);
    expect(() => auth.guard(request(), { cost: 0 })).toThrow(TypeError);
  });
});

describe('fetch: authorize on a Request built in code (no Host header)', () => {
  it('reads the origin from the URL: a same-origin write creates, a foreign Origin is 403', async () => {
    const service = createKeyService({ store: memoryStore(), argon2: CHEAP_ARGON2 });
    const auth = createFetchHandler({
      service,
      authorize: (request) =>
        request.headers.get('cookie') === 'session=alice' ? { ownerId: 'alice' } : null,
    });
    const post = (origin: string) =>
      auth.handle(
        new Request('https://app.example/v1/api-keys', {
          method: 'POST',
          headers: { cookie: 'session=alice', origin, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'from the page' }),
        }),
      );
    const own = await post('https://app.example');
    expect(own?.status).toBe(201);
    const foreign = await post('https://evil.example');
    expect(foreign?.status).toBe(403);
    expect(await foreign?.text()).toContain('"code":"forbidden_origin"');
    expect((await service.list('alice')).map((k) => [k.name, k.createdBy])).toEqual([
      ['from the page', null],
    ]);
    await service.close();
  });
});
