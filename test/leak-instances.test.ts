import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LeakEvent } from '@keyward/core';
import { sendRequest } from '@keyward/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Instance, postgresInstances } from './support/postgres-instances.js';
import { postgresReachable } from './support/services.js';

/**
 * A GitHub alert received by one of two instances of a host app that share a Postgres
 * store and its LISTEN/NOTIFY bus, over HTTP on loopback, with warm caches: the other
 * instance applies the quarantine as soon as the bus delivers.
 */

const postgres = await postgresReachable();
const GUARDED = '/test/protected';
const GRACE_SECONDS = 3;

const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const publicKeys = {
  public_keys: [
    {
      key_identifier: 'pg-test',
      key: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      is_current: true,
    },
  ],
};

const events: LeakEvent[] = [];
const cluster = postgresInstances('keyward_leak', GUARDED);
const startInstance = () =>
  cluster.start({
    service: {
      leaks: { quarantineGraceSeconds: GRACE_SECONDS, onLeak: (event) => void events.push(event) },
    },
    httpOptions: { leaks: { github: { publicKeys } } },
  });

const status = async (instance: Instance, rawKey: string, path = GUARDED) =>
  (await sendRequest(instance.server.url, { path, headers: { 'X-API-Key': rawKey } })).status;

describe.skipIf(!postgres)(
  'leak response across two instances (Postgres store and bus, HTTP)',
  () => {
    let a: Instance;
    let b: Instance;
    beforeAll(async () => {
      await cluster.setUp();
      [a, b] = (await Promise.all([startInstance(), startInstance()])) as [Instance, Instance];
    });

    afterAll(() => cluster.tearDown());

    it('an alert on A quarantines the key on warm B: management refused at once, the host route until the grace ends', async () => {
      const owner = `leak-${randomBytes(4).toString('hex')}`;
      const leaked = await a.service.create(owner, 'leaked');
      for (const instance of [a, b]) {
        expect(await status(instance, leaked.rawKey)).toBe(200);
        expect(await status(instance, leaked.rawKey, '/v1/api-keys')).toBe(200);
      }

      const body = JSON.stringify([
        {
          token: leaked.rawKey,
          type: 'keyward_api_key',
          url: 'https://github.com/o/r',
          source: 'content',
        },
      ]);
      const answer = await sendRequest(a.server.url, {
        method: 'POST',
        path: '/v1/api-keys/leaks/github',
        headers: {
          'Content-Type': 'application/json',
          'GITHUB-PUBLIC-KEY-IDENTIFIER': 'pg-test',
          'GITHUB-PUBLIC-KEY-SIGNATURE': sign(
            'sha256',
            Buffer.from(body),
            pair.privateKey,
          ).toString('base64'),
        },
        body,
      });
      const alertedAt = Date.now();
      expect(answer.json).toEqual([
        {
          token_hash: createHash('sha256').update(leaked.rawKey).digest('hex'),
          token_type: 'keyward_api_key',
          label: 'true_positive',
        },
      ]);

      // B held the key in its cache; the bus event makes it read the mark (NOTIFY is async:
      // allow it a moment).
      let managed = 200;
      for (let i = 0; i < 100 && managed !== 403; i++) {
        managed = await status(b, leaked.rawKey, '/v1/api-keys');
        if (managed !== 403) await sleep(20);
      }
      expect(managed).toBe(403);
      expect(await status(b, leaked.rawKey)).toBe(200);
      const listed = await b.service.list(owner);
      expect(listed[0]).toMatchObject({ id: leaked.id, leakSource: 'github' });
      const expiresAt = listed[0]?.expiresAt?.getTime() ?? 0;
      expect(expiresAt - (listed[0]?.leakedAt?.getTime() ?? 0)).toBe(GRACE_SECONDS * 1000);
      expect(expiresAt).toBeLessThanOrEqual(alertedAt + GRACE_SECONDS * 1000);

      // Refused on both instances from the shortened expiry on.
      await sleep(Math.max(0, expiresAt - Date.now()) + 50);
      expect(await status(a, leaked.rawKey)).toBe(401);
      expect(await status(b, leaked.rawKey)).toBe(401);
      expect(events).toMatchObject([{ keyId: leaked.id, ownerId: owner, action: 'quarantine' }]);
    });
  },
);
