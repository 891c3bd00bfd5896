import { createHash, randomUUID } from 'node:crypto';
import { type AuthorizedUser, createKeyService, type KeyService, memoryStore } from '@keyward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHEAP_ARGON2 } from './cheap-argon2.js';
import { sendHeadWithoutBody, sendRequest, type TestRequest } from './http-client.js';
import type { RunningServer, ServerSetup } from './http-contract.js';

export interface SessionContractOptions {
  /** Starts the host app as `describeHttpContract` does, passing keyward
   * `authorize: (request) => setup.signIn(<Cookie header>)` and `dashboard: true`. */
  startServer(setup: ServerSetup & Required<Pick<ServerSetup, 'signIn'>>): Promise<RunningServer>;
}

const BASE = '/v1/api-keys';
const FOREIGN = 'https://evil.example';

/**
 * The host's sign-in on the management routes (docs/design.md, "Host sign-in") over real
 * HTTP: a key header decides when present, else the host's `authorize`; cookie-admitted
 * writes need same-origin proof, refused with 403 `forbidden_origin` before the body is
 * read; the dashboard page and the API description.
 */
export function describeSessionContract(name: string, options: SessionContractOptions): void {
  describe(`${name}: host sign-in (authorize)`, () => {
    let server: RunningServer;
    let service: KeyService;
    const errors: unknown[] = [];
    /** Cookie `session=<ownerId>` signs in that account; `session=throw` makes authorize throw;
     * `session=reader:<ownerId>` signs in with read scopes only. */
    const signIn = (cookie: string | undefined): AuthorizedUser | null => {
      const value = /(?:^|;\s*)session=([^;]+)/.exec(cookie ?? '')?.[1];
      if (value === undefined) return null;
      if (value === 'throw') throw new Error('session store down');
      if (value.startsWith('reader:'))
        return { ownerId: value.slice(7), scopes: ['api_keys:read'] };
      return { ownerId: value };
    };

    beforeAll(async () => {
      service = createKeyService({
        store: memoryStore(),
        argon2: CHEAP_ARGON2,
        onError: (error) => errors.push(error),
      });
      server = await options.startServer({
        service,
        guardedPath: '/test/protected',
        scopedPath: '/test/orders',
        scopes: ['orders:write'],
        signIn,
      });
    });

    afterAll(async () => {
      await server?.close();
      await service?.close();
    });

    const call = (req: TestRequest) => sendRequest(server.url, req);
    const owner = () => `acct_${randomUUID()}`;
    const session = (ownerId: string) => ({ Cookie: `theme=dark; session=${ownerId}` });
    const sameOrigin = { 'Sec-Fetch-Site': 'same-origin' };
    const code = (res: { json: unknown }) =>
      (res.json as { error?: { code?: string } }).error?.code;

    it('without a key header, the signed-in user lists their own keys and never another account’s', async () => {
      const alice = owner();
      const bob = owner();
      await service.create(alice, 'alice key');
      await service.create(bob, 'bob key');
      const res = await call({ path: BASE, headers: session(alice) });
      expect(res.status).toBe(200);
      const names = (res.json as { data: Array<{ name: string }> }).data.map((k) => k.name);
      expect(names).toEqual(['alice key']);
    });

    it('a key header decides when present: another account’s key lists that account, a bad key is 401', async () => {
      const alice = owner();
      const bob = owner();
      const { rawKey } = await service.create(bob, 'bob key');
      await service.create(alice, 'alice key');
      const byKey = await call({ path: BASE, headers: { ...session(alice), 'X-API-Key': rawKey } });
      expect((byKey.json as { data: Array<{ name: string }> }).data.map((k) => k.name)).toEqual([
        'bob key',
      ]);
      const bad = await call({
        path: BASE,
        headers: { ...session(alice), 'X-API-Key': `${rawKey.slice(0, -2)}xx` },
      });
      expect({ status: bad.status, code: code(bad) }).toEqual({
        status: 401,
        code: 'invalid_api_key',
      });
    });

    it('no key and no session: 401 missing_api_key, as without authorize', async () => {
      const res = await call({ path: BASE, headers: { Cookie: 'theme=dark' } });
      expect({ status: res.status, code: code(res) }).toEqual({
        status: 401,
        code: 'missing_api_key',
      });
    });

    it('authorize throwing: 500 internal_error, the error goes to onError, no access', async () => {
      errors.length = 0;
      const res = await call({ path: BASE, headers: { Cookie: 'session=throw' } });
      expect({ status: res.status, code: code(res) }).toEqual({
        status: 500,
        code: 'internal_error',
      });
      expect(String(errors[0])).toMatch(/session store down/);
      expect(res.text).not.toMatch(/session store down/);
    });

    it('a same-origin write creates a key with createdBy null and the session’s scopes', async () => {
      const alice = owner();
      const res = await call({
        method: 'POST',
        path: BASE,
        headers: { ...session(alice), ...sameOrigin },
        body: { name: 'from the page' },
      });
      expect(res.status).toBe(201);
      const data = (res.json as { data: Record<string, unknown> }).data;
      expect(data.createdBy).toBeNull();
      expect(data.scopes).toEqual(['*']);
      const listed = await service.list(alice);
      expect(listed.map((k) => [k.name, k.createdBy])).toEqual([['from the page', null]]);
      // The key made there works at once with plain HTTP.
      const guarded = await call({
        path: '/test/protected',
        headers: { 'X-API-Key': data.rawKey as string },
      });
      expect(guarded.status).toBe(200);
    });

    it('an Origin equal to the request’s own (from Host) is proof too', async () => {
      const alice = owner();
      const res = await call({
        method: 'POST',
        path: BASE,
        headers: { ...session(alice), Origin: server.url },
        body: { name: 'origin proof' },
      });
      expect(res.status).toBe(201);
    });

    describe('cross-site attempts: 403 forbidden_origin, nothing changed', () => {
      it('a POST with a foreign Origin', async () => {
        const alice = owner();
        const res = await call({
          method: 'POST',
          path: BASE,
          headers: { ...session(alice), Origin: FOREIGN, 'Sec-Fetch-Site': 'cross-site' },
          body: { name: 'forged' },
        });
        expect({ status: res.status, code: code(res) }).toEqual({
          status: 403,
          code: 'forbidden_origin',
        });
        expect(await service.list(alice)).toEqual([]);
      });

      it('a form post without Sec-Fetch-Site (refused before its media type is judged)', async () => {
        const alice = owner();
        const res = await call({
          method: 'POST',
          path: BASE,
          headers: {
            ...session(alice),
            Origin: FOREIGN,
            'Content-Type': 'application/x-www-form-urlencoded',
          },
          body: 'name=forged',
        });
        expect({ status: res.status, code: code(res) }).toEqual({
          status: 403,
          code: 'forbidden_origin',
        });
        expect(await service.list(alice)).toEqual([]);
      });

      it('a session cookie with no proof at all: no Origin, no Sec-Fetch-Site (DELETE, PATCH, roll)', async () => {
        const alice = owner();
        const key = await service.create(alice, 'keep me');
        const attempts: TestRequest[] = [
          { method: 'DELETE', path: `${BASE}/${key.id}?cascade=true`, headers: session(alice) },
          {
            method: 'PATCH',
            path: `${BASE}/${key.id}`,
            headers: session(alice),
            body: { name: 'x' },
          },
          { method: 'POST', path: `${BASE}/${key.id}/roll`, headers: session(alice), body: {} },
          {
            method: 'POST',
            path: `${BASE}/${key.id}/roll`,
            headers: { ...session(alice), Origin: 'null' },
            body: {},
          },
        ];
        for (const attempt of attempts) {
          const res = await call(attempt);
          expect({ status: res.status, code: code(res) }).toEqual({
            status: 403,
            code: 'forbidden_origin',
          });
        }
        expect((await service.list(alice)).map((k) => [k.id, k.name])).toEqual([
          [key.id, 'keep me'],
        ]);
      });

      it('refuses before reading the body: the answer comes while the body never does', async () => {
        const alice = owner();
        const answer = await sendHeadWithoutBody(server.url, {
          method: 'POST',
          path: BASE,
          headers: {
            Cookie: `session=${alice}`,
            Origin: FOREIGN,
            'Content-Type': 'application/json',
            'Content-Length': '100',
          },
        });
        expect(answer.status).toBe(403);
        expect(answer.raw).toContain('forbidden_origin');
      });
    });

    it('a key-authenticated write needs no origin proof (no ambient credential)', async () => {
      const alice = owner();
      const { rawKey } = await service.create(alice, 'bootstrap');
      const res = await call({
        method: 'POST',
        path: BASE,
        headers: { 'X-API-Key': rawKey, Origin: FOREIGN },
        body: { name: 'by key' },
      });
      expect(res.status).toBe(201);
    });

    it('a session holds only the scopes authorize gives it', async () => {
      const alice = owner();
      const res = await call({
        method: 'POST',
        path: BASE,
        headers: { Cookie: `session=reader:${alice}`, ...sameOrigin },
        body: { name: 'x' },
      });
      expect({ status: res.status, code: code(res) }).toEqual({
        status: 403,
        code: 'insufficient_scope',
      });
    });

    describe('the dashboard page', () => {
      it('serves the signed-in user the page: no-store, the CSP, no inline script', async () => {
        const res = await call({ path: `${BASE}/dashboard`, headers: session(owner()) });
        expect(res.status).toBe(200);
        expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
        expect(res.headers['cache-control']).toBe('no-store');
        expect(res.headers['content-security-policy']).toBe(
          "default-src 'self'; frame-ancestors 'none'",
        );
        expect(res.text).not.toMatch(/<script(?![^>]*\bsrc=)/);
        expect(res.text).not.toMatch(/\sstyle=|\son[a-z]+=/i);
      });

      it('ignores a key header there: no session, 401 with a short HTML page', async () => {
        const { rawKey } = await service.create(owner(), 'k');
        const res = await call({ path: `${BASE}/dashboard`, headers: { 'X-API-Key': rawKey } });
        expect(res.status).toBe(401);
        expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
        expect(res.text).toMatch(/not signed in/i);
      });

      it('escapes the account name it shows', async () => {
        const res = await call({ path: `${BASE}/dashboard`, headers: { Cookie: 'session=<b>x' } });
        expect(res.text).toContain('&#60;b&#62;x');
        expect(res.text).not.toContain('<b>x');
      });

      it('serves its assets under their content hash, cached for a year', async () => {
        const page = await call({ path: `${BASE}/dashboard`, headers: session(owner()) });
        const links = [...page.text.matchAll(/(?:src|href)="(dashboard\/[^"]+)"/g)].map(
          (m) => m[1],
        );
        expect(links).toHaveLength(3);
        for (const link of links) {
          const res = await call({ path: `${BASE}/${link}` });
          expect(res.status).toBe(200);
          expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
          const hash = /\.([A-Za-z0-9_-]{12})\.(js|css|svg)$/.exec(link ?? '')?.[1];
          const digest = createHash('sha256').update(res.text).digest('base64url').slice(0, 12);
          expect(digest).toBe(hash);
        }
        const stale = await call({ path: `${BASE}/dashboard/app.000000000000.js` });
        expect(stale.status).toBe(404);
      });
    });

    it('serves the OpenAPI document without a key', async () => {
      const res = await call({ path: `${BASE}/openapi.json` });
      expect(res.status).toBe(200);
      expect((res.json as { openapi: string }).openapi).toBe('3.1.0');
    });
  });
}
