import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startExample } from '../../../test/support/example-process.js';
import { postgresReachable, redisReachable } from '../../../test/support/services.js';
import { PGLITE_LOCK_FILE } from '../src/pglite-lock.js';
import { DATABASE_URL, RAW_KEY_LINE, REDIS_URL, randomId, runCli, tempDir } from './support.js';

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);

async function hello(url: string, rawKey: string) {
  const response = await fetch(`${url}/v1/hello`, { headers: { 'X-API-Key': rawKey } });
  return {
    status: response.status,
    body: (await response.json()) as { data?: { message: string } },
  };
}

/** Polls until `check` holds, for at most `ms`; how long it took. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return Date.now() - started;
}

const servers = [
  { store: 'postgres', env: { KEYWARD_STORE: 'postgres', DATABASE_URL }, up: postgres },
  { store: 'redis', env: { KEYWARD_STORE: 'redis', REDIS_URL }, up: redis },
] as const;

describe.each(servers)('the CLI beside a running example on $store', ({ env, up }) => {
  it.skipIf(!up)(
    'a key the CLI makes works over HTTP; a cascade revocation by the CLI reaches the app through the bus',
    async () => {
      const owner = randomId('cli-http');
      expect((await runCli(['migrate'], { env })).code).toBe(0);
      const app = await startExample('express', { ...env, DEMO_ACCOUNTS: randomId('demo') });
      try {
        const created = await runCli(['create', '--owner', owner, '--name', 'from the CLI'], {
          env,
        });
        expect(created.stdout).toMatch(RAW_KEY_LINE);
        const rawKey = created.stdout.trim();
        const first = await hello(app.url, rawKey);
        expect(first).toMatchObject({
          status: 200,
          body: { data: { message: `Hello, ${owner}!` } },
        });

        // The CLI's key makes a child over HTTP, which the cascade takes along.
        const child = await fetch(`${app.url}/v1/api-keys`, {
          method: 'POST',
          headers: { 'X-API-Key': rawKey, 'Content-Type': 'application/json' },
          body: '{"name": "child"}',
        });
        expect(child.status).toBe(201);
        const childData = ((await child.json()) as { data: { id: string; rawKey: string } }).data;
        expect((await hello(app.url, childData.rawKey)).status).toBe(200);

        const keyId = JSON.parse(
          (await runCli(['verify', '--json'], { env, input: rawKey })).stdout,
        ).keyId as string;
        const revoked = await runCli(['revoke', '--owner', owner, keyId, '--cascade'], { env });
        expect(revoked).toMatchObject({ code: 0, stderr: '' });
        expect(revoked.stdout.trim().split('\n').sort()).toEqual([keyId, childData.id].sort());
        // Both were cached by the app (for 60 s): only the bus can drop them this soon.
        const ms = await within(3000, async () => {
          const [parent, kid] = await Promise.all([
            hello(app.url, rawKey),
            hello(app.url, childData.rawKey),
          ]);
          return parent.status === 401 && kid.status === 401;
        });
        console.log(`revocation by the CLI reached the app in ${ms} ms`);
        expect((await runCli(['verify'], { env, input: childData.rawKey })).code).toBe(1);
      } finally {
        expect(await app.stop()).toBe(0);
      }
    },
    120_000,
  );
});

describe('the CLI and an example on one PGlite folder, one after the other', () => {
  const dir = tempDir('http');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a key the CLI made works over HTTP once the app starts on the same folder', async () => {
    const env = { KEYWARD_STORE: 'pglite', KEYWARD_DATA_DIR: join(dir, 'pglite') };
    const owner = randomId('cli-http');
    expect((await runCli(['migrate'], { env })).code).toBe(0);
    const created = await runCli(['create', '--owner', owner, '--name', 'first key'], { env });
    expect(created.stdout).toMatch(RAW_KEY_LINE);
    const app = await startExample('express', { ...env, DEMO_ACCOUNTS: owner });
    try {
      // The account already holds the CLI's key, so the app bootstraps none.
      expect(app.bootstrap.size).toBe(0);
      const answer = await hello(app.url, created.stdout.trim());
      expect(answer).toMatchObject({
        status: 200,
        body: { data: { message: `Hello, ${owner}!` } },
      });

      // While the app holds the folder, the CLI stays off it: a key it wrote there would
      // never reach the app (PGlite serves one process), yet be printed as made.
      const meanwhile = await runCli(['create', '--owner', owner, '--name', 'second'], { env });
      expect(meanwhile).toMatchObject({ code: 3, stdout: '' });
      expect(meanwhile.stderr).toMatch(
        /^keyward create: the PGlite folder is in use by a keyward example \(pid \d+\); PGlite serves one process at a time: stop it first, [^\n]+\n$/,
      );
    } finally {
      expect(await app.stop()).toBe(0);
    }
    // Stopped, the app left the folder free.
    expect(existsSync(join(env.KEYWARD_DATA_DIR, PGLITE_LOCK_FILE))).toBe(false);
    expect((await runCli(['list', '--owner', owner], { env })).code).toBe(0);
  }, 120_000);

  it('takes over the mark of a process that died holding the folder', async () => {
    const env = { KEYWARD_STORE: 'pglite', KEYWARD_DATA_DIR: join(dir, 'pglite') };
    const dead = spawnSync(process.execPath, ['-e', '']).pid as number;
    writeFileSync(
      join(env.KEYWARD_DATA_DIR, PGLITE_LOCK_FILE),
      JSON.stringify({ pid: dead, holder: 'a crashed app' }),
    );
    const result = await runCli(['migrate'], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(existsSync(join(env.KEYWARD_DATA_DIR, PGLITE_LOCK_FILE))).toBe(false);
  }, 60_000);
});
