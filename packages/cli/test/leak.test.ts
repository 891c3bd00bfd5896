import { createKeyService } from '@keyward/core';
import { redisStore } from '@keyward/redis';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisReachable } from '../../../test/support/services.js';
import { REDIS_URL, randomId, runCli } from './support.js';

const redis = await redisReachable();

describe.skipIf(!redis)('keyward list, for a key quarantined after a leak', () => {
  const client = redis ? new Redis(REDIS_URL) : undefined;
  afterAll(async () => {
    client?.disconnect();
  });

  it('shows when the leak was reported and by whom, in the table and in --json', async () => {
    const owner = randomId('cli-leak');
    // The CLI's default namespace, so the process reads what this one wrote.
    const service = createKeyService({
      store: redisStore(client as Redis),
      argon2: CHEAP_ARGON2,
    });
    try {
      const leaked = await service.create(owner, 'leaked');
      await service.create(owner, 'fine');
      const outcome = await service.reportLeak(leaked.rawKey, { source: 'github' });
      expect(outcome).toMatchObject({ keyId: leaked.id, action: 'quarantine' });
      const [listed] = (await service.list(owner)).filter((k) => k.id === leaked.id);
      const env = { KEYWARD_STORE: 'redis', REDIS_URL };

      const table = await runCli(['list', '--owner', owner], { env });
      expect(table.code).toBe(0);
      const lines = table.stdout.split('\n');
      const at = `${listed?.leakedAt?.toISOString().slice(0, 16).replace('T', ' ')}Z`;
      expect(lines.find((line) => line.startsWith(leaked.id))).toContain(`(leaked ${at}, github)`);
      expect(lines.filter((line) => line.includes('(leaked'))).toHaveLength(1);

      const json = await runCli(['list', '--owner', owner, '--json'], { env });
      const keys = JSON.parse(json.stdout) as Record<string, unknown>[];
      expect(keys.find((k) => k.id === leaked.id)).toMatchObject({
        leakedAt: listed?.leakedAt?.toISOString(),
        leakSource: 'github',
      });
      expect(Object.keys(keys[0] ?? {}).slice(-2)).toEqual(['leakedAt', 'leakSource']);
    } finally {
      for (const key of await service.list(owner)) await service.revoke(owner, key.id);
      await service.close();
    }
  });
});
