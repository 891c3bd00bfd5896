import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendRequest } from '@keyward/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { startExample } from './support/example-process.js';
import { runSpecFlow } from './support/spec-flow.js';

const frameworks = ['express', 'fastify', 'hono'] as const;
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe.each(frameworks)('examples/%s', (framework) => {
  it('starts on the memory store, prints a bootstrap key per account, and serves every curl of the README', async () => {
    const app = await startExample(framework, { DEMO_ACCOUNTS: 'demo, acme' });
    try {
      expect([...app.bootstrap.keys()]).toEqual(['demo', 'acme']);
      expect(app.output()).toContain(`curl -X POST ${app.url}/v1/api-keys`);
      await runSpecFlow(app.url, app.bootstrap.get('demo') as string);
      // Accounts are separate: acme does not see demo's keys.
      const acme = await sendRequest(app.url, {
        path: '/v1/api-keys',
        headers: { 'X-API-Key': app.bootstrap.get('acme') as string },
      });
      expect((acme.json as { data: Array<{ name: string }> }).data.map((k) => k.name)).toEqual([
        'bootstrap',
      ]);
    } finally {
      expect(await app.stop()).toBe(0);
    }
  });

  it('on PGlite (the default), keys survive a restart: same raw key, same list', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), `keyward-${framework}-`));
    dirs.push(dataDir);
    const env = { KEYWARD_STORE: 'pglite', KEYWARD_DATA_DIR: dataDir };
    const first = await startExample(framework, env);
    const rawKey = first.bootstrap.get('demo') as string;
    let before: unknown;
    try {
      expect(rawKey).toBeDefined();
      const created = await sendRequest(first.url, {
        method: 'POST',
        path: '/v1/api-keys',
        headers: { 'X-API-Key': rawKey },
        body: { name: 'survivor' },
      });
      expect(created.status).toBe(201);
      before = (
        await sendRequest(first.url, { path: '/v1/api-keys', headers: { 'X-API-Key': rawKey } })
      ).json;
    } finally {
      expect(await first.stop()).toBe(0);
    }
    const second = await startExample(framework, env);
    try {
      expect(second.bootstrap.size).toBe(0);
      expect(second.output()).toContain('already hold keys');
      const after = await sendRequest(second.url, {
        path: '/v1/api-keys',
        headers: { 'X-API-Key': rawKey },
      });
      expect(after.status).toBe(200);
      // The list is unchanged but for the bootstrap key's lastUsedAt, moved by this request.
      const strip = (body: unknown) =>
        (body as { data: Array<Record<string, unknown>> }).data.map(({ lastUsedAt: _, ...k }) => k);
      expect(strip(after.json)).toEqual(strip(before));
      await runSpecFlow(second.url, rawKey);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  }, 120_000);
});
