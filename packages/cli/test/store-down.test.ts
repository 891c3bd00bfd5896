import { rmSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresReachable } from '../../../test/support/services.js';
import { DATABASE_URL, runCli, tempDir } from './support.js';

const postgres = await postgresReachable();
const downDir = tempDir('down');
afterAll(() => rmSync(downDir, { recursive: true, force: true }));
const aKey = 'rep_000000000000000000000000000000000000000000003vn2tD';

// Port 1 on loopback: nothing listens there, so the connection is refused at once.
const down = [
  {
    store: 'postgres',
    env: { KEYWARD_STORE: 'postgres', DATABASE_URL: 'postgres://postgres:secret@127.0.0.1:1/test' },
    message:
      /^keyward \w+: cannot reach Postgres at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/test \(.+\): start it, or set DATABASE_URL \(or --database-url\)\.\n$/,
  },
  {
    store: 'redis',
    env: { KEYWARD_STORE: 'redis', REDIS_URL: 'redis://127.0.0.1:1' },
    message:
      /^keyward \w+: cannot reach Redis at redis:\/\/127\.0\.0\.1:1 \(.+\): start it, or set REDIS_URL \(or --redis-url\)\.\n$/,
  },
  {
    store: 'pglite',
    env: { KEYWARD_STORE: 'pglite', KEYWARD_DATA_DIR: join(downDir, 'missing') },
    message:
      /^keyward \w+: no PGlite database in .*missing: set KEYWARD_DATA_DIR \(or --data-dir\) to your app's folder, or run `keyward migrate` to create one there\.\n$/,
  },
] as const;

const commands: Array<{ args: string[]; input?: string }> = [
  { args: ['create', '--owner', 'o', '--name', 'n'] },
  { args: ['list', '--owner', 'o'] },
  { args: ['revoke', '--owner', 'o', 'key_00000000000000000000'] },
  { args: ['roll', '--owner', 'o', 'key_00000000000000000000'] },
  { args: ['verify'], input: aKey },
];

describe.each(down)('with $store down', ({ env, message, store }) => {
  it('every command that needs the store exits 3 with one line on stderr that names the fix', async () => {
    const all = store === 'pglite' ? commands : [{ args: ['migrate'] }, ...commands];
    const results = await Promise.all(
      all.map(({ args, input }) => runCli(args, { env, ...(input ? { input } : {}) })),
    );
    for (const result of results) {
      expect(result).toMatchObject({ code: 3, stdout: '' });
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toContain(aKey);
      expect(result.stderr).not.toContain('secret');
    }
  }, 60_000);
});

describe('a store reachable but never migrated', () => {
  it.skipIf(!postgres)('exits 3 and says to run keyward migrate', async () => {
    // A schema that does not exist: the table is not found on the search path.
    const url = `${DATABASE_URL}?options=-c%20search_path%3Dkeyward_cli_absent_schema`;
    const result = await runCli(['list', '--owner', 'o'], {
      env: { KEYWARD_STORE: 'postgres', DATABASE_URL: url },
    });
    expect(result).toMatchObject({ code: 3, stdout: '' });
    expect(result.stderr).toMatch(
      /^keyward list: table "keyward_api_keys" does not exist: run `keyward migrate` first\.\n$/,
    );
  });
});

describe('a store that accepts connections and never answers', () => {
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    server = createServer(() => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server.close();
  });

  it.each([
    ['redis', () => ({ KEYWARD_STORE: 'redis', REDIS_URL: `redis://127.0.0.1:${port}` })],
    [
      'postgres',
      () => ({ KEYWARD_STORE: 'postgres', DATABASE_URL: `postgres://u@127.0.0.1:${port}/db` }),
    ],
  ])(
    '%s: exits 3 within seconds instead of hanging',
    async (_, env) => {
      const result = await runCli(['list', '--owner', 'o'], { env: env() });
      expect(result).toMatchObject({ code: 3, stdout: '' });
      expect(result.stderr).toMatch(
        /^keyward list: cannot reach \w+ at .*: start it, or set \w+_URL .*\n$/,
      );
      expect(result.ms).toBeLessThan(15_000);
    },
    30_000,
  );
});
