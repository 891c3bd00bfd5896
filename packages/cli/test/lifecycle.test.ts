import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { postgresReachable, redisReachable } from '../../../test/support/services.js';
import {
  type CliRun,
  DATABASE_URL,
  RAW_KEY_LINE,
  REDIS_URL,
  randomId,
  runCli,
  tempDir,
} from './support.js';

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);
const pgliteDir = tempDir('lifecycle');
afterAll(() => rmSync(pgliteDir, { recursive: true, force: true }));

const stores = [
  {
    store: 'pglite',
    env: { KEYWARD_STORE: 'pglite', KEYWARD_DATA_DIR: join(pgliteDir, 'db') },
    up: true,
  },
  { store: 'postgres', env: { KEYWARD_STORE: 'postgres', DATABASE_URL }, up: postgres },
  { store: 'redis', env: { KEYWARD_STORE: 'redis', REDIS_URL }, up: redis },
] as const;

describe.each(stores)('keyward on $store, as a process', ({ env, up }) => {
  it.skipIf(!up)(
    'migrate, create, verify, list, roll, verify the old key in its grace, revoke --cascade, verify refused',
    async () => {
      const owner = randomId('cli');
      const rawKeys: string[] = [];
      const runs: CliRun[] = [];
      const cli = async (args: string[], input?: string) => {
        const result = await runCli(args, { env, ...(input === undefined ? {} : { input }) });
        runs.push(result);
        return result;
      };

      // Idempotent: the second run finds everything in place.
      for (let i = 0; i < 2; i++) {
        const migrated = await cli(['migrate']);
        expect(migrated).toMatchObject({ code: 0, stdout: '' });
        expect(migrated.stderr).toMatch(/^keyward: .*(up to date|current layout).*\n$/);
      }

      const created = await cli([
        'create',
        '--owner',
        owner,
        '--name',
        'deploy bot',
        '--expires-in',
        '30d',
        '--scope',
        'read',
        '--scope',
        'write',
        '--rate-limit',
        '100/1m',
        '--credits',
        '500',
        '--refill',
        '500/month',
      ]);
      expect(created).toMatchObject({ code: 0, stderr: '' });
      expect(created.stdout).toMatch(RAW_KEY_LINE);
      const oldKey = created.stdout.trim();
      rawKeys.push(oldKey);

      const verified = await cli(['verify', '--json'], `${oldKey}\n`);
      expect(verified.code).toBe(0);
      const identity = JSON.parse(verified.stdout) as {
        ownerId: string;
        keyId: string;
        scopes: string[];
      };
      expect(identity).toMatchObject({ ownerId: owner, scopes: ['read', 'write'] });
      const keyId = identity.keyId;
      const plain = await cli(['verify'], oldKey);
      expect(plain).toMatchObject({ code: 0, stdout: `owner ${owner}\nkey ${keyId}\n` });

      const listed = await cli(['list', '--owner', owner]);
      expect(listed.code).toBe(0);
      const [header, row, ...more] = listed.stdout.trimEnd().split('\n');
      expect(header).toMatch(
        /^ID\s+NAME\s+KEY\s+SCOPES\s+CREATED\s+EXPIRES\s+LAST USED\s+LIMIT\s+CREDITS$/,
      );
      expect(more).toEqual([]);
      expect(row).toContain(keyId);
      expect(row).toContain('deploy bot');
      expect(row).toContain(`${oldKey.slice(0, 8)}…${oldKey.slice(-6)}`);
      expect(row).toContain('read,write');
      expect(row).toMatch(/100\/60s\s+500 \(500\/month\)$/);
      const listedJson = JSON.parse((await cli(['list', '--owner', owner, '--json'])).stdout);
      expect(listedJson).toMatchObject([
        {
          id: keyId,
          name: 'deploy bot',
          scopes: ['read', 'write'],
          rateLimit: { limit: 100, windowSec: 60 },
          credits: { remaining: 500, refill: { amount: 500, every: 'month' }, strict: false },
        },
      ]);

      const rolled = await cli(['roll', '--owner', owner, keyId, '--grace', '1h']);
      expect(rolled).toMatchObject({ code: 0, stderr: '' });
      expect(rolled.stdout).toMatch(RAW_KEY_LINE);
      const newKey = rolled.stdout.trim();
      rawKeys.push(newKey);
      expect(newKey).not.toBe(oldKey);
      // The old key works on during its grace; the new one at once.
      expect((await cli(['verify'], oldKey)).code).toBe(0);
      const newIdentity = await cli(['verify', '--json'], newKey);
      expect(newIdentity.code).toBe(0);
      const newId = (JSON.parse(newIdentity.stdout) as { keyId: string }).keyId;

      const revoked = await cli(['revoke', '--owner', owner, keyId, '--cascade']);
      expect(revoked).toMatchObject({ code: 0, stdout: `${keyId}\n`, stderr: '' });
      const refused = await cli(['verify'], oldKey);
      expect(refused).toMatchObject({ code: 1, stdout: '' });
      expect(refused.stderr).toMatch(/^keyward verify: refused: [^\n]+\n$/);
      // The rolled key was not made by the old one: the cascade leaves it alone.
      expect((await cli(['verify'], newKey)).code).toBe(0);

      // Gone: a second revoke and a roll find nothing.
      const again = await cli(['revoke', '--owner', owner, keyId]);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/^keyward revoke: account .* holds no key .*\n$/);
      expect((await cli(['roll', '--owner', owner, keyId])).code).toBe(1);
      expect(await cli(['revoke', '--owner', owner, newId])).toMatchObject({ code: 0 });
      expect((await cli(['verify'], newKey)).code).toBe(1);

      // A raw key reaches stdout of create and roll only, and never stderr.
      for (const run of runs) {
        for (const rawKey of rawKeys) expect(run.stderr).not.toContain(rawKey);
      }
      const printedKeys = runs.filter((run) => rawKeys.some((k) => run.stdout.includes(k)));
      expect(printedKeys).toEqual([created, rolled]);
    },
    180_000,
  );
});
