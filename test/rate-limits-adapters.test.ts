/**
 * The rate-limit contract on every adapter (docs/design.md, "Rate limits and credits"): the
 * header fields on admitted and refused answers, a route's `cost`, `credits_exhausted`, the
 * management routes counting too, and the fields over HTTP.
 */
import { createKeyService, memoryStore } from '@keyward/core';
import {
  CHEAP_ARGON2,
  type OpenApiResponseCheck,
  openApiResponseChecker,
  type RunningServer,
  sendRequest,
} from '@keyward/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COSTLY_COST, COSTLY_PATH, startServer } from './support/servers.js';

const GUARDED_PATH = '/test/protected';
const BASE = '/v1/api-keys';

describe.each(['express', 'fastify', 'hono'] as const)('%s: rate limits', (adapter) => {
  const service = createKeyService({ store: memoryStore(), argon2: CHEAP_ARGON2 });
  let server: RunningServer;
  const get = (path: string, rawKey: string) =>
    sendRequest(server.url, { method: 'GET', path, headers: { 'X-API-Key': rawKey } });

  let check: OpenApiResponseCheck;
  /** The management answer is one the served OpenAPI document describes. */
  const documented = (method: string, path: string, res: { status: number; json: unknown }) =>
    expect(check({ method, path, status: res.status, json: res.json })).toEqual([]);

  beforeAll(async () => {
    server = await startServer[adapter]({ service, guardedPath: GUARDED_PATH });
    const described = await sendRequest(server.url, { path: `${BASE}/openapi.json` });
    check = openApiResponseChecker(described.json as Record<string, unknown>);
  });
  afterAll(async () => {
    await server?.close();
    await service.close();
  });

  it('an unlimited key gets no RateLimit fields', async () => {
    const { rawKey } = await service.create('acct_free', 'free');
    const res = await get(GUARDED_PATH, rawKey);
    expect(res.status).toBe(200);
    expect(res.headers.ratelimit).toBeUndefined();
    expect(res.headers['ratelimit-policy']).toBeUndefined();
  });

  it('a route cost spends that many units; the refusal is 429 rate_limited with the fields and Retry-After', async () => {
    const { rawKey } = await service.create('acct_cost', 'limited', {
      rateLimit: { limit: 12, windowSec: 3600 },
    });
    const first = await get(COSTLY_PATH, rawKey);
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"window";q=12;w=3600');
    expect(first.headers.ratelimit).toMatch(/^"window";r=7;t=\d+$/);
    expect((await get(COSTLY_PATH, rawKey)).status).toBe(200);
    const refused = await get(COSTLY_PATH, rawKey);
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ success: false, error: { code: 'rate_limited' } });
    const t = Number(/t=(\d+)$/.exec(String(refused.headers.ratelimit))?.[1]);
    expect(refused.headers.ratelimit).toMatch(/^"window";r=2;t=\d+$/);
    expect(Number(refused.headers['retry-after'])).toBe(t);
    expect(t).toBeGreaterThanOrEqual(1);
    // The refused costly request cost nothing: two cheap ones still pass.
    expect((await get(GUARDED_PATH, rawKey)).status).toBe(200);
    expect((await get(GUARDED_PATH, rawKey)).status).toBe(200);
    expect((await get(GUARDED_PATH, rawKey)).status).toBe(429);
    expect(COSTLY_COST).toBe(5);
  });

  it('a refusal for scope carries the fields too, and spends nothing', async () => {
    const { rawKey } = await service.create('acct_scoped', 'reader', {
      rateLimit: { limit: 7, windowSec: 3600 },
      scopes: ['api_keys:read'],
    });
    // A host route that needs orders:write, then a management write: both 403.
    const host = await get('/test/orders', rawKey);
    expect(host.status).toBe(403);
    expect(host.headers['ratelimit-policy']).toBe('"window";q=7;w=3600');
    expect(host.headers.ratelimit).toMatch(/^"window";r=7;t=\d+$/);
    const write = await sendRequest(server.url, {
      method: 'DELETE',
      path: `${BASE}/key_doesNotExist0000`,
      headers: { 'X-API-Key': rawKey },
    });
    expect(write.status).toBe(403);
    expect(write.headers['ratelimit-policy']).toBe('"window";q=7;w=3600');
    expect(write.headers.ratelimit).toMatch(/^"window";r=7;t=\d+$/);
    // Neither refusal was counted.
    const admitted = await get(GUARDED_PATH, rawKey);
    expect(admitted.status).toBe(200);
    expect(admitted.headers.ratelimit).toMatch(/^"window";r=6;t=\d+$/);
  });

  it('a management request refused past the limit check (its body, its media type, a missing key, its own powers) costs nothing', async () => {
    const { rawKey } = await service.create('acct_refunds', 'limited manager', {
      rateLimit: { limit: 9, windowSec: 3600 },
      credits: { remaining: 9 },
    });
    const send = (method: string, path: string, headers: Record<string, string>, body?: string) =>
      sendRequest(server.url, {
        method,
        path,
        headers: { 'X-API-Key': rawKey, ...headers },
        ...(body === undefined ? {} : { body }),
      });
    const json = { 'Content-Type': 'application/json' };
    const refusals = [
      // A key with limits may not create keys (403), whatever the body.
      await send('POST', BASE, json, '{"name":"child"}'),
      // Not JSON (415), broken JSON (400), a bad field (400).
      await send('POST', BASE, { 'Content-Type': 'text/plain' }, 'x'),
      await send('PATCH', `${BASE}/key_doesNotExist0000`, json, '{"name":'),
      await send('PATCH', `${BASE}/key_doesNotExist0000`, json, '{"name":""}'),
      // No such key (404).
      await send('DELETE', `${BASE}/key_doesNotExist0000`, {}),
    ];
    expect(refusals.map((res) => res.status)).toEqual([403, 415, 400, 400, 404]);
    for (const res of refusals) {
      expect(res.headers.ratelimit).toMatch(/^"window";r=9;t=\d+$/);
    }
    // Nothing was spent: the first admitted request finds the whole window and balance.
    const list = await get(BASE, rawKey);
    expect(list.status).toBe(200);
    expect(list.headers.ratelimit).toMatch(/^"window";r=8;t=\d+$/);
    const listed = (list.json as { data: { name: string; credits: { remaining: number } }[] }).data;
    expect(listed.find((key) => key.name === 'limited manager')?.credits.remaining).toBe(8);
  });

  it('credits run out with 429 credits_exhausted; the management routes spend them too', async () => {
    const { rawKey } = await service.create('acct_credits', 'credits', {
      credits: { remaining: 2, refill: { amount: 2, every: 'month' } },
    });
    const list = await get(BASE, rawKey);
    expect(list.status).toBe(200);
    documented('GET', BASE, list);
    expect((await get(GUARDED_PATH, rawKey)).status).toBe(200);
    const refused = await get(GUARDED_PATH, rawKey);
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ error: { code: 'credits_exhausted' } });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const spent = await get(BASE, rawKey);
    expect(spent.status).toBe(429);
    expect(spent.json).toMatchObject({ error: { code: 'credits_exhausted' } });
    documented('GET', BASE, spent);
  });

  it('create and PATCH over HTTP set and clear the fields; a limited key may not', async () => {
    const admin = await service.create('acct_http', 'admin');
    const send = (method: string, path: string, rawKey: string, body?: unknown) =>
      sendRequest(server.url, {
        method,
        path,
        headers: { 'X-API-Key': rawKey, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const created = await send('POST', BASE, admin.rawKey, {
      name: 'metered',
      rateLimit: { limit: 5, windowSec: 60 },
      credits: { remaining: 9, refill: { amount: 9, every: 'day' }, strict: true },
    });
    expect(created.status).toBe(201);
    documented('POST', BASE, created);
    const data = (created.json as { data: Record<string, unknown> }).data;
    expect(Object.keys(data).slice(-5)).toEqual([
      'createdBy',
      'rateLimit',
      'credits',
      'leakedAt',
      'leakSource',
    ]);
    expect(data).toMatchObject({
      rateLimit: { limit: 5, windowSec: 60 },
      credits: { remaining: 9, refill: { amount: 9, every: 'day' }, strict: true },
    });
    const bad = await send('POST', BASE, admin.rawKey, {
      name: 'bad',
      rateLimit: { limit: 5, windowSec: 0 },
    });
    expect(bad.status).toBe(400);
    documented('POST', BASE, bad);
    expect(bad.json).toMatchObject({ error: { code: 'invalid_request' } });
    const limitedRaw = String(data.rawKey);
    // A limited key cannot mint keys or raise limits: both would escape its own.
    const minted = await send('POST', BASE, limitedRaw, { name: 'escape' });
    expect(minted.status).toBe(403);
    expect(minted.json).toMatchObject({ error: { code: 'insufficient_scope' } });
    documented('POST', BASE, minted);
    // Past the limit check, the refusal still carries the key's limit fields.
    expect(minted.headers['ratelimit-policy']).toBe('"window";q=5;w=60');
    const raise = await send('PATCH', `${BASE}/${String(data.id)}`, limitedRaw, {
      credits: { remaining: 1_000_000 },
    });
    expect(raise.status).toBe(403);
    const cleared = await send('PATCH', `${BASE}/${String(data.id)}`, admin.rawKey, {
      rateLimit: null,
      credits: null,
    });
    expect(cleared.status).toBe(200);
    documented('PATCH', `${BASE}/${String(data.id)}`, cleared);
    expect(cleared.json).toMatchObject({ data: { rateLimit: null, credits: null } });
    expect((await get(GUARDED_PATH, limitedRaw)).headers.ratelimit).toBeUndefined();
  });
});
