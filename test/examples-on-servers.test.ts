import { describe, expect, it } from 'vitest';
import { startExample } from './support/example-process.js';
import { DATABASE_URL, postgresReachable, REDIS_URL, redisReachable } from './support/services.js';
import { runSpecFlow } from './support/spec-flow.js';

const [postgres, redis] = await Promise.all([postgresReachable(), redisReachable()]);
// Accounts of their own, so runs sharing the servers never meet at the cap.
const account = () => `e2e-${Math.random().toString(36).slice(2, 10)}`;

describe.each(['express', 'fastify'] as const)('examples/%s on servers', (framework) => {
  it.skipIf(!postgres)('KEYWARD_STORE=postgres serves the whole spec', async () => {
    const demo = account();
    const app = await startExample(framework, {
      KEYWARD_STORE: 'postgres',
      DATABASE_URL,
      DEMO_ACCOUNTS: demo,
    });
    try {
      expect(app.output()).toContain('store: Postgres');
      await runSpecFlow(app.url, app.bootstrap.get(demo) as string);
    } finally {
      expect(await app.stop()).toBe(0);
    }
  });

  it.skipIf(!redis)('KEYWARD_STORE=redis serves the whole spec', async () => {
    const demo = account();
    const app = await startExample(framework, {
      KEYWARD_STORE: 'redis',
      REDIS_URL,
      DEMO_ACCOUNTS: demo,
    });
    try {
      expect(app.output()).toContain('store: Redis');
      await runSpecFlow(app.url, app.bootstrap.get(demo) as string);
    } finally {
      expect(await app.stop()).toBe(0);
    }
  });
});
