import { setTimeout as sleep } from 'node:timers/promises';
import { createKeyService, type KeyService } from '@keyward/core';
import { kyselyStore, migrate, postgresLogBus } from '@keyward/kysely';
import { redisStore, redisStreamBus } from '@keyward/redis';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { postgresReachable, redisReachable } from '../../../test/support/services.js';
import { DATABASE_URL, REDIS_URL, randomId, runCli } from './support.js';

const [redis, postgres] = await Promise.all([redisReachable(), postgresReachable()]);

/** Polls until the app refuses `rawKey`, or `ms` pass: how long the app took, or null. */
async function refusedWithin(app: KeyService, rawKey: string, ms: number): Promise<number | null> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (!(await app.verify(rawKey)).ok) return Date.now() - started;
    await sleep(25);
  }
  return null;
}

/** Warms a new key on `app`, revokes it with the CLI (a process on the same store), and
 * expects `app` to refuse it within 3 s. The key, for further checks. */
async function revokeWarmKeyWithCli(app: KeyService, owner: string, env: Record<string, string>) {
  await app.ready();
  const key = await app.create(owner, 'warm');
  expect((await app.verify(key.rawKey)).ok).toBe(true);
  const revoked = await runCli(['revoke', '--owner', owner, key.id], { env });
  expect(revoked).toMatchObject({ code: 0, stderr: '' });
  expect(await refusedWithin(app, key.rawKey, 3000)).not.toBeNull();
  return key;
}

/**
 * An app on a log bus (the one with a stated revocation bound) must hear of a key the CLI
 * revoked: the CLI appends to the log as well as publishing on the pub/sub channel, so
 * apps on either bus drop the key at once.
 */
describe.skipIf(!redis)('keyward revoke reaches an app on redisStreamBus', () => {
  const clients: Redis[] = [];
  const connect = () => {
    const client = new Redis(REDIS_URL);
    clients.push(client);
    return client;
  };
  afterAll(() => {
    for (const client of clients) client.disconnect();
  });

  it('a warm key is refused within 3 s of the CLI revoking it', async () => {
    const owner = randomId('cli-log');
    const app = createKeyService({
      store: redisStore(connect()),
      bus: redisStreamBus({ publisher: connect(), subscriber: connect(), onError: () => {} }),
      argon2: CHEAP_ARGON2,
    });
    try {
      await revokeWarmKeyWithCli(app, owner, { KEYWARD_STORE: 'redis', REDIS_URL });
    } finally {
      await app.close();
    }
  });
});

describe.skipIf(!postgres)('keyward revoke reaches an app on postgresLogBus', () => {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  afterAll(() => db.destroy());

  it('a warm key is refused within 3 s of the CLI revoking it, through the log', async () => {
    await migrate(db);
    const owner = randomId('cli-log');
    const app = createKeyService({
      store: kyselyStore(db),
      bus: postgresLogBus({
        db,
        connect: async () => {
          const client = new pg.Client({ connectionString: DATABASE_URL });
          await client.connect();
          return client;
        },
        onError: () => {},
      }),
      argon2: CHEAP_ARGON2,
    });
    try {
      const key = await revokeWarmKeyWithCli(app, owner, {
        KEYWARD_STORE: 'postgres',
        DATABASE_URL,
      });
      // In the log, not only as a bare notification: an app that was away replays it.
      const { rows } = await pool.query<{ payload: string }>(
        'select payload from keyward_invalidation_log order by seq desc limit 20',
      );
      expect(rows.some((row) => row.payload.includes(key.id))).toBe(true);
    } finally {
      await app.close();
    }
  });
});
