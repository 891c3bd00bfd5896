import { setTimeout as sleep } from 'node:timers/promises';
import type { KeyService } from '@keyward/core';
import { describe, expect, it } from 'vitest';
import type { TestRequest, TestResponse } from './http-client.js';
import { CREATE_FIELDS, KEY_FIELDS } from './key-fields.js';

/** What the lifecycle group needs from the HTTP contract suite that runs it. */
export interface LifecycleContext {
  readonly service: KeyService;
  readonly base: string;
  /** A host route behind the plain guard, answering `{"apiKey": …}`. */
  readonly guardedPath: string;
  /** A host route behind a guard that needs `scopedPathScopes`. */
  readonly scopedPath: string;
  readonly scopedPathScopes: readonly string[];
  call(req: TestRequest): Promise<TestResponse>;
  /** A fresh account with one key made by the host's code, with these options. */
  account(options?: Parameters<KeyService['create']>[2]): Promise<{
    ownerId: string;
    rawKey: string;
    id: string;
  }>;
  expectError(res: TestResponse, status: number, code: string): void;
  /** Raw keys the suite saw created, for the secret-hygiene check: over HTTP (a create or
   * roll answer) or by the host's code. */
  remember(rawKey: string, madeOverHttp: boolean): void;
}

type KeyJson = Record<string, unknown> & { id: string; rawKey: string };

/**
 * Expiry, scopes, metadata, roll and cascade revocation over HTTP: the lifecycle rules, in
 * the order the README states them, for every adapter.
 */
export function describeLifecycleContract(ctx: LifecycleContext): void {
  const { base } = ctx;
  const auth = (rawKey: string) => ({ 'X-API-Key': rawKey });

  async function create(rawKey: string, body: Record<string, unknown>): Promise<TestResponse> {
    const res = await ctx.call({ method: 'POST', path: base, headers: auth(rawKey), body });
    const data = (res.json as { data?: KeyJson } | undefined)?.data;
    if (data?.rawKey) ctx.remember(data.rawKey, true);
    return res;
  }

  async function created(rawKey: string, body: Record<string, unknown>): Promise<KeyJson> {
    const res = await create(rawKey, body);
    expect(res.status, res.text).toBe(201);
    return (res.json as { data: KeyJson }).data;
  }

  async function guarded(rawKey: string, path = ctx.guardedPath): Promise<TestResponse> {
    return ctx.call({ path, headers: auth(rawKey) });
  }

  describe('lifecycle — the model', () => {
    it('every answer shows expiresAt, scopes, metadata and createdBy after the v1 fields', async () => {
      const { rawKey, id } = await ctx.account();
      const made = await create(rawKey, { name: 'plain' });
      expect(Object.keys((made.json as { data: object }).data)).toEqual(CREATE_FIELDS);
      const data = (made.json as { data: KeyJson }).data;
      expect(data).toMatchObject({ expiresAt: null, scopes: ['*'], metadata: {}, createdBy: id });
      const list = await ctx.call({ path: base, headers: auth(rawKey) });
      for (const item of (list.json as { data: object[] }).data) {
        expect(Object.keys(item)).toEqual(KEY_FIELDS);
      }
      const bootstrap = (list.json as { data: KeyJson[] }).data.find((k) => k.id === id);
      expect(bootstrap).toMatchObject({ scopes: ['*'], metadata: {}, createdBy: null });
    });

    it('create takes expiresIn, scopes and metadata, and the guard hands them to the host', async () => {
      const { rawKey } = await ctx.account();
      const before = Date.now();
      const data = await created(rawKey, {
        name: 'ci',
        expiresIn: 3600,
        scopes: ['orders:read', 'orders:write'],
        metadata: { team: 'ops', limits: { daily: 5 } },
      });
      const expiresAt = Date.parse(data.expiresAt as string);
      expect(expiresAt).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
      expect(expiresAt).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);
      expect(data.scopes).toEqual(['orders:read', 'orders:write']);
      expect(data.metadata).toEqual({ team: 'ops', limits: { daily: 5 } });
      const res = await guarded(data.rawKey);
      expect(res.status).toBe(200);
      expect((res.json as { apiKey: Record<string, unknown> }).apiKey).toMatchObject({
        id: data.id,
        expiresAt: data.expiresAt,
        scopes: ['orders:read', 'orders:write'],
        metadata: { team: 'ops', limits: { daily: 5 } },
      });
    });

    it('create takes an ISO 8601 expiresAt and answers it in UTC to the millisecond', async () => {
      const { rawKey } = await ctx.account();
      const at = new Date(Date.now() + 86_400_000);
      at.setUTCMilliseconds(250);
      const local = `${at.toISOString().slice(0, -1)}+00:00`;
      const data = await created(rawKey, { name: 'dated', expiresAt: local });
      expect(data.expiresAt).toBe(at.toISOString());
    });

    it.each([
      ['expiresAt and expiresIn together', { expiresAt: '2099-01-01T00:00:00Z', expiresIn: 60 }],
      ['expiresAt in the past', { expiresAt: '2020-01-01T00:00:00Z' }],
      ['expiresAt with no zone', { expiresAt: '2030-01-01T00:00:00' }],
      ['expiresAt more than 10 years ahead', { expiresAt: '2099-01-01T00:00:00Z' }],
      ['expiresIn under 60 s', { expiresIn: 59 }],
      ['expiresIn not whole', { expiresIn: 90.5 }],
      ['no scopes', { scopes: [] }],
      ['a repeated scope', { scopes: ['a', 'a'] }],
      ['a scope with a space', { scopes: ['orders read'] }],
      ['metadata that is an array', { metadata: [1] }],
      ['metadata 4 levels deep', { metadata: { a: { b: { c: {} } } } }],
      ['metadata over 2 KiB', { metadata: { pad: 'x'.repeat(2100) } }],
    ])('answers 400 invalid_request for %s, and creates nothing', async (_, fields) => {
      const { rawKey } = await ctx.account();
      const res = await create(rawKey, { name: 'x', ...fields });
      ctx.expectError(res, 400, 'invalid_request');
      const list = await ctx.call({ path: base, headers: auth(rawKey) });
      expect((list.json as { data: unknown[] }).data).toHaveLength(1);
    });
  });

  describe('lifecycle — scopes', () => {
    it('a key made over HTTP gets its creator’s scopes by default, and records its creator', async () => {
      const { rawKey } = await ctx.account({ scopes: ['api_keys:write', 'orders:read'] });
      const parent = await ctx.call({ path: base, headers: auth(rawKey) });
      const parentId = (parent.json as { data: KeyJson[] }).data[0]?.id;
      const data = await created(rawKey, { name: 'child' });
      expect(data.scopes).toEqual(['api_keys:write', 'orders:read']);
      expect(data.createdBy).toBe(parentId);
    });

    it('granting a scope the creating key lacks answers 403 insufficient_scope and creates nothing', async () => {
      const { rawKey } = await ctx.account({ scopes: ['api_keys:write', 'orders:read'] });
      for (const scopes of [['orders:write'], ['*'], ['orders:read', 'billing:read']]) {
        const res = await create(rawKey, { name: 'escalate', scopes });
        ctx.expectError(res, 403, 'insufficient_scope');
      }
      const narrower = await created(rawKey, { name: 'narrower', scopes: ['orders:read'] });
      expect(narrower.scopes).toEqual(['orders:read']);
      const list = await ctx.call({ path: base, headers: auth(rawKey) });
      expect((list.json as { data: unknown[] }).data).toHaveLength(2);
    });

    it('management routes: GET needs api_keys:read or :write; writes need api_keys:write', async () => {
      const reader = await ctx.account({ scopes: ['api_keys:read'] });
      const writer = await ctx.account({ scopes: ['api_keys:write'] });
      const neither = await ctx.account({ scopes: ['orders:read'] });
      expect((await ctx.call({ path: base, headers: auth(reader.rawKey) })).status).toBe(200);
      expect((await ctx.call({ path: base, headers: auth(writer.rawKey) })).status).toBe(200);
      const refused = await ctx.call({ path: base, headers: auth(neither.rawKey) });
      ctx.expectError(refused, 403, 'insufficient_scope');
      expect(refused.headers['www-authenticate']).toBe(
        'ApiKey header="X-API-Key", error="insufficient_scope", scope="api_keys:read"',
      );
      for (const req of [
        { method: 'POST', path: base, body: { name: 'x' } },
        { method: 'PATCH', path: `${base}/${reader.id}`, body: { name: 'x' } },
        { method: 'DELETE', path: `${base}/${reader.id}` },
        { method: 'POST', path: `${base}/${reader.id}/roll` },
      ]) {
        const res = await ctx.call({ ...req, headers: auth(reader.rawKey) });
        ctx.expectError(res, 403, 'insufficient_scope');
        expect(res.headers['www-authenticate']).toBe(
          'ApiKey header="X-API-Key", error="insufficient_scope", scope="api_keys:write"',
        );
      }
      // Nothing changed: the reader's key is still there under its name.
      const list = await ctx.call({ path: base, headers: auth(reader.rawKey) });
      expect((list.json as { data: KeyJson[] }).data.map((k) => k.name)).toEqual(['bootstrap']);
    });

    it('the scope check comes after the key and before media type, size and body', async () => {
      const reader = await ctx.account({ scopes: ['api_keys:read'] });
      const res = await ctx.call({
        method: 'POST',
        path: base,
        headers: { ...auth(reader.rawKey), 'Content-Type': 'text/plain' },
        body: 'x'.repeat(20_000),
      });
      ctx.expectError(res, 403, 'insufficient_scope');
    });

    it('a host route guarded with scopes admits a key holding them all, else answers 403', async () => {
      const all = await ctx.account();
      const holder = await ctx.account({ scopes: [...ctx.scopedPathScopes, 'other'] });
      const lacking = await ctx.account({ scopes: ['orders:read'] });
      expect((await guarded(all.rawKey, ctx.scopedPath)).status).toBe(200);
      expect((await guarded(holder.rawKey, ctx.scopedPath)).status).toBe(200);
      const refused = await guarded(lacking.rawKey, ctx.scopedPath);
      ctx.expectError(refused, 403, 'insufficient_scope');
      expect(refused.headers['www-authenticate']).toBe(
        `ApiKey header="X-API-Key", error="insufficient_scope", scope="${ctx.scopedPathScopes.join(' ')}"`,
      );
      // Twice: once cold, once from the cache, the same answer.
      expect((await guarded(lacking.rawKey, ctx.scopedPath)).text).toBe(refused.text);
      // The plain guard still admits it.
      expect((await guarded(lacking.rawKey)).status).toBe(200);
    });
  });

  describe('lifecycle — expiry', () => {
    it('a key is accepted until its expiresAt and refused from then on, cached or not', async () => {
      const { ownerId } = await ctx.account();
      const expiresAt = new Date(Date.now() + 1500);
      const key = await ctx.service.create(ownerId, 'short', {
        expiresAt: expiresAt.toISOString(),
      });
      ctx.remember(key.rawKey, false);
      expect((await guarded(key.rawKey)).status).toBe(200);
      expect((await guarded(key.rawKey)).status).toBe(200);
      await sleep(Math.max(0, expiresAt.getTime() - Date.now()) + 5);
      const refused = await guarded(key.rawKey);
      ctx.expectError(refused, 401, 'invalid_api_key');
      const unknown = await guarded(`${key.rawKey.slice(0, 4)}${'A'.repeat(50)}`);
      expect(refused.text).toBe(unknown.text);
      // Still listed, with its expiry, until revoked.
      const list = await ctx.service.list(ownerId);
      expect(list.find((k) => k.id === key.id)?.expiresAt?.toISOString()).toBe(
        expiresAt.toISOString(),
      );
    });
  });

  describe('lifecycle — update (PATCH)', () => {
    it('replaces metadata whole, sets or shortens expiresAt, and renames, together or apart', async () => {
      const { rawKey } = await ctx.account();
      const key = await created(rawKey, { name: 'k', metadata: { a: 1, b: 2 } });
      const patch = (body: unknown) =>
        ctx.call({ method: 'PATCH', path: `${base}/${key.id}`, headers: auth(rawKey), body });
      const meta = await patch({ metadata: { c: 3 } });
      expect(meta.status).toBe(200);
      expect((meta.json as { data: KeyJson }).data).toMatchObject({
        name: 'k',
        metadata: { c: 3 },
      });
      const later = new Date(Date.now() + 7 * 86_400_000).toISOString();
      const sooner = new Date(Date.now() + 86_400_000).toISOString();
      expect(((await patch({ expiresAt: later })).json as { data: KeyJson }).data.expiresAt).toBe(
        later,
      );
      const both = await patch({ expiresAt: sooner, name: 'renamed' });
      expect((both.json as { data: KeyJson }).data).toMatchObject({
        expiresAt: sooner,
        name: 'renamed',
      });
      // Never extended.
      ctx.expectError(await patch({ expiresAt: later }), 400, 'invalid_request');
      ctx.expectError(await patch({ expiresAt: null }), 400, 'invalid_request');
    });

    it('an empty object, scopes, or only unknown fields answer 400 and change nothing', async () => {
      const { rawKey, id } = await ctx.account();
      for (const body of [{}, { scopes: ['a'] }, { color: 'red' }]) {
        const res = await ctx.call({
          method: 'PATCH',
          path: `${base}/${id}`,
          headers: auth(rawKey),
          body,
        });
        ctx.expectError(res, 400, 'invalid_request');
      }
      const list = await ctx.call({ path: base, headers: auth(rawKey) });
      expect((list.json as { data: KeyJson[] }).data[0]).toMatchObject({
        name: 'bootstrap',
        scopes: ['*'],
      });
    });
  });

  describe('lifecycle — roll (POST /:id/roll)', () => {
    it('answers 201 with a new key in the create shape; both work during the grace', async () => {
      const { rawKey } = await ctx.account();
      const old = await created(rawKey, {
        name: 'prod',
        metadata: { env: 'prod' },
        scopes: ['orders:read', 'orders:write'],
        expiresIn: 30 * 86_400,
      });
      const before = Date.now();
      const res = await ctx.call({
        method: 'POST',
        path: `${base}/${old.id}/roll`,
        headers: auth(rawKey),
        body: { expiresIn: 3600 },
      });
      expect(res.status, res.text).toBe(201);
      expect(Object.keys((res.json as { data: object }).data)).toEqual(CREATE_FIELDS);
      const next = (res.json as { data: KeyJson }).data;
      ctx.remember(next.rawKey, true);
      expect(next.id).not.toBe(old.id);
      expect(next).toMatchObject({
        name: 'prod',
        metadata: { env: 'prod' },
        scopes: ['orders:read', 'orders:write'],
        expiresAt: old.expiresAt,
        createdBy: old.createdBy,
        lastUsedAt: null,
      });
      expect((await guarded(next.rawKey)).status).toBe(200);
      expect((await guarded(old.rawKey)).status).toBe(200);
      const list = await ctx.call({ path: base, headers: auth(rawKey) });
      const oldListed = (list.json as { data: KeyJson[] }).data.find((k) => k.id === old.id);
      const graceEnd = Date.parse(oldListed?.expiresAt as string);
      expect(graceEnd).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
      expect(graceEnd).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);
    });

    it('with expiresIn 0 the old key is refused at once, cached or not', async () => {
      const { rawKey } = await ctx.account();
      const old = await created(rawKey, { name: 'leaked' });
      expect((await guarded(old.rawKey)).status).toBe(200);
      const res = await ctx.call({
        method: 'POST',
        path: `${base}/${old.id}/roll`,
        headers: auth(rawKey),
        body: { expiresIn: 0 },
      });
      expect(res.status).toBe(201);
      ctx.remember((res.json as { data: KeyJson }).data.rawKey, true);
      ctx.expectError(await guarded(old.rawKey), 401, 'invalid_api_key');
      expect((await guarded((res.json as { data: KeyJson }).data.rawKey)).status).toBe(200);
    });

    it('without a body the grace is one day; narrower scopes are allowed, wider ones are 403', async () => {
      const { rawKey } = await ctx.account();
      const old = await created(rawKey, { name: 'k', scopes: ['orders:read', 'orders:write'] });
      const wider = await ctx.call({
        method: 'POST',
        path: `${base}/${old.id}/roll`,
        headers: auth(rawKey),
        body: { scopes: ['orders:read', 'billing:read'] },
      });
      ctx.expectError(wider, 403, 'insufficient_scope');
      const narrower = await ctx.call({
        method: 'POST',
        path: `${base}/${old.id}/roll`,
        headers: auth(rawKey),
        body: { scopes: ['orders:read'] },
      });
      expect(narrower.status).toBe(201);
      ctx.remember((narrower.json as { data: KeyJson }).data.rawKey, true);
      expect((narrower.json as { data: KeyJson }).data.scopes).toEqual(['orders:read']);
      const bare = await ctx.call({
        method: 'POST',
        path: `${base}/${old.id}/roll`,
        headers: auth(rawKey),
      });
      expect(bare.status, bare.text).toBe(201);
      ctx.remember((bare.json as { data: KeyJson }).data.rawKey, true);
      const list = await ctx.call({ path: base, headers: auth(rawKey) });
      const oldListed = (list.json as { data: KeyJson[] }).data.find((k) => k.id === old.id);
      // The first roll shortened it to a day from then; the bare one keeps the earlier.
      expect(Date.parse(oldListed?.expiresAt as string)).toBeLessThanOrEqual(
        Date.now() + 86_400_000,
      );
    });

    it('answers 404 for an unknown id, another account’s key, or an expired key', async () => {
      const mine = await ctx.account();
      const theirs = await ctx.account();
      const expired = await ctx.service.create(mine.ownerId, 'soon', {
        expiresAt: new Date(Date.now() + 300).toISOString(),
      });
      ctx.remember(expired.rawKey, false);
      await sleep(350);
      for (const id of ['key_doesnotexist00000000', theirs.id, expired.id]) {
        const res = await ctx.call({
          method: 'POST',
          path: `${base}/${id}/roll`,
          headers: auth(mine.rawKey),
        });
        ctx.expectError(res, 404, 'not_found');
      }
    });

    it('a body must be JSON, and its fields valid', async () => {
      const { rawKey, id } = await ctx.account();
      const textual = await ctx.call({
        method: 'POST',
        path: `${base}/${id}/roll`,
        headers: { ...auth(rawKey), 'Content-Type': 'text/plain' },
        body: 'now',
      });
      ctx.expectError(textual, 415, 'unsupported_media_type');
      for (const body of [{ expiresIn: -1 }, { expiresIn: 604_801 }, { scopes: [] }]) {
        const res = await ctx.call({
          method: 'POST',
          path: `${base}/${id}/roll`,
          headers: auth(rawKey),
          body,
        });
        ctx.expectError(res, 400, 'invalid_request');
      }
    });
  });

  describe('lifecycle — cascade revocation', () => {
    it('?cascade=true revokes the key and every key it created, transitively, and lists them', async () => {
      const { rawKey, id: rootId } = await ctx.account();
      const child = await created(rawKey, { name: 'child' });
      const grandchild = await created(child.rawKey, { name: 'grandchild' });
      const sibling = await created(rawKey, { name: 'sibling' });
      for (const key of [rawKey, child.rawKey, grandchild.rawKey, sibling.rawKey]) {
        expect((await guarded(key)).status).toBe(200);
      }
      // Revoked with the child's own key, from the root: a key may revoke itself.
      const res = await ctx.call({
        method: 'DELETE',
        path: `${base}/${rootId}?cascade=true`,
        headers: auth(child.rawKey),
      });
      expect(res.status).toBe(200);
      const body = res.json as { success: boolean; revoked: string[] };
      expect(Object.keys(body)).toEqual(['success', 'revoked']);
      expect(body.revoked[0]).toBe(rootId);
      expect([...body.revoked].sort()).toEqual(
        [rootId, child.id, grandchild.id, sibling.id].sort(),
      );
      for (const key of [rawKey, child.rawKey, grandchild.rawKey, sibling.rawKey]) {
        ctx.expectError(await guarded(key), 401, 'invalid_api_key');
      }
    });

    it('without cascade, or with cascade=false, only the named key goes, with the v1 body', async () => {
      const { rawKey } = await ctx.account();
      const parent = await created(rawKey, { name: 'parent' });
      const child = await created(parent.rawKey, { name: 'child' });
      for (const query of ['?cascade=false', '']) {
        const target = query === '' ? parent : await created(rawKey, { name: 'p2' });
        const res = await ctx.call({
          method: 'DELETE',
          path: `${base}/${target.id}${query}`,
          headers: auth(rawKey),
        });
        expect(res.text).toBe('{"success":true}');
      }
      expect((await guarded(child.rawKey)).status).toBe(200);
    });

    it('a cascade value other than true or false answers 400 and revokes nothing', async () => {
      const { rawKey, id } = await ctx.account();
      const res = await ctx.call({
        method: 'DELETE',
        path: `${base}/${id}?cascade=yes`,
        headers: auth(rawKey),
      });
      ctx.expectError(res, 400, 'invalid_request');
      expect((await guarded(rawKey)).status).toBe(200);
    });

    it('an unknown id with cascade answers 404', async () => {
      const { rawKey } = await ctx.account();
      const res = await ctx.call({
        method: 'DELETE',
        path: `${base}/key_doesnotexist00000000?cascade=true`,
        headers: auth(rawKey),
      });
      ctx.expectError(res, 404, 'not_found');
    });
  });
}
