/**
 * No oracle: every way a presented key can be wrong gets the same bytes back, so a caller
 * cannot tell an unknown key from a revoked one, a wrong secret or a typo. Compared on raw
 * responses read off the socket: status line, every header but Date, in order, and body.
 */
import {
  createKeyService,
  type InvalidKeyReason,
  keyChecksum,
  LOOKUP_LENGTH,
  memoryStore,
  randomBase62,
  SECRET_LENGTH,
} from '@keyward/core';
import { CHEAP_ARGON2, type RunningServer } from '@keyward/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RawRequest, type RawResponse, rawRequest } from './support/raw-http.js';
import { startServer } from './support/servers.js';

const GUARDED_PATH = '/test/protected';
const reasons: InvalidKeyReason[] = [];
const service = createKeyService({
  store: memoryStore(),
  argon2: { ...CHEAP_ARGON2, memoryCost: 64 },
  // A lookup locked out after this many failures is one more kind of wrong key to compare.
  verification: { maxFailures: 20 },
  onInvalidKey: ({ reason }) => reasons.push(reason),
});
const servers: Partial<Record<'express' | 'fastify' | 'hono', RunningServer>> = {};

const checksummed = (lookup: string, secret: string) =>
  `rep_${lookup}${secret}${keyChecksum('rep', lookup, secret)}`;
const lookupOf = (rawKey: string) => rawKey.slice(4, 4 + LOOKUP_LENGTH);

let realKey: string;
let realId: string;
/** Wrong keys by kind; each is a function, so every request presents a fresh one where
 * freshness matters (no negative-cache hit hiding the store path). */
let wrongKeys: Record<string, () => string>;

beforeAll(async () => {
  const real = await service.create('no-oracle', 'real');
  const revoked = await service.create('no-oracle', 'revoked');
  const locked = await service.create('no-oracle', 'locked');
  // Wrong secrets go to a key of their own: enough of them lock a lookup out, the right
  // key included, and the real key must stay usable here.
  const target = await service.create('no-oracle', 'target');
  // Expired by waiting, as a key in the wild expires: made a moment ahead, then waited out.
  const expiresAt = new Date(Date.now() + 200);
  const expired = await service.create('no-oracle', 'expired', { expiresAt });
  // Good until it expires (and cached as good: expiry must win over the cache too).
  const beforeExpiry = await service.verify(expired.rawKey);
  await service.revoke('no-oracle', revoked.id);
  realKey = real.rawKey;
  realId = real.id;
  const lastChar = realKey.at(-1) === '0' ? '1' : '0';
  wrongKeys = {
    'unknown lookup': () => checksummed(randomBase62(LOOKUP_LENGTH), randomBase62(SECRET_LENGTH)),
    revoked: () => revoked.rawKey,
    'real lookup, wrong secret': () =>
      checksummed(lookupOf(target.rawKey), randomBase62(SECRET_LENGTH)),
    'bad checksum': () => `${realKey.slice(0, -1)}${lastChar}`,
    'lookup locked after failures': () =>
      checksummed(lookupOf(locked.rawKey), randomBase62(SECRET_LENGTH)),
    expired: () => expired.rawKey,
  };
  // Spend the locked lookup's failure budget.
  for (let i = 0; i < 20; i++)
    await service.verify(wrongKeys['lookup locked after failures']?.() ?? '');
  expect(beforeExpiry.ok).toBe(true);
  await new Promise((resolve) =>
    setTimeout(resolve, Math.max(0, expiresAt.getTime() - Date.now()) + 20),
  );
  servers.express = await startServer.express({ service, guardedPath: GUARDED_PATH });
  servers.fastify = await startServer.fastify({ service, guardedPath: GUARDED_PATH });
  servers.hono = await startServer.hono({ service, guardedPath: GUARDED_PATH });
});

afterAll(async () => {
  await servers.express?.close();
  await servers.fastify?.close();
  await servers.hono?.close();
  await service.close();
});

function requestsWith(key: string): Array<[string, RawRequest]> {
  const k: [string, string] = ['X-API-Key', key];
  return [
    ['list', { method: 'GET', target: '/v1/api-keys', headers: [k] }],
    ['head', { method: 'HEAD', target: '/v1/api-keys', headers: [k] }],
    [
      'create',
      {
        method: 'POST',
        target: '/v1/api-keys',
        headers: [k, ['Content-Type', 'application/json']],
        body: Buffer.from('{"name":"x"}'),
      },
    ],
    [
      // A valid key would get 415 here: the key check comes first, whatever the key.
      'rename, text/plain',
      {
        method: 'PATCH',
        target: `/v1/api-keys/${realId}`,
        headers: [k, ['Content-Type', 'text/plain']],
        body: Buffer.from('x'),
      },
    ],
    ['revoke', { method: 'DELETE', target: `/v1/api-keys/${realId}`, headers: [k] }],
    ['guarded route', { method: 'GET', target: GUARDED_PATH, headers: [k] }],
  ];
}

/** The response with the Date header line cut out: the one part allowed to differ. */
function withoutDate(res: RawResponse): string {
  const head = [res.statusLine, ...res.headerLines.filter(([n]) => n.toLowerCase() !== 'date')];
  return `${head.map((line) => (Array.isArray(line) ? line.join(': ') : line)).join('\r\n')}\r\n\r\n${res.body.toString('latin1')}`;
}

describe.each(['express', 'fastify', 'hono'] as const)('%s: no oracle', (adapter) => {
  it('answers every kind of wrong key with the same bytes, on every route', async () => {
    const url = (servers[adapter] as RunningServer).url;
    reasons.length = 0;
    const labels = requestsWith('').map(([label]) => label);
    for (const [index, label] of labels.entries()) {
      const answers = new Map<string, string>();
      for (const [kind, key] of Object.entries(wrongKeys)) {
        const [, req] = requestsWith(key())[index] as [string, RawRequest];
        const res = await rawRequest(url, req);
        expect(res.status, `${label} with ${kind}`).toBe(401);
        if (req.method !== 'HEAD') expect(res.body.toString()).toContain('"invalid_api_key"');
        answers.set(kind, withoutDate(res));
      }
      const distinct = new Set(answers.values());
      expect(distinct.size, `${label}: ${[...answers.keys()].join(', ')} must not differ`).toBe(1);
      // No wrong key, not even a near-valid one, comes back in the answer.
      expect([...distinct][0]).not.toContain(realKey.slice(4));
    }
    // The six kinds took five different paths inside the service, and still look alike.
    expect(new Set(reasons)).toEqual(
      new Set(['unknown_key', 'wrong_secret', 'malformed', 'too_many_failures', 'expired']),
    );
  });

  it('the real key, on the same requests, does get through (the wrong keys were near misses)', async () => {
    const url = (servers[adapter] as RunningServer).url;
    const res = await rawRequest(url, requestsWith(realKey)[5]?.[1] as RawRequest);
    expect(res.status).toBe(200);
  });
});

describe('no oracle across adapters', () => {
  it('Express, Fastify and Hono send the same 401 body', async () => {
    const bodies = await Promise.all(
      (['express', 'fastify', 'hono'] as const).map(async (adapter) => {
        const url = (servers[adapter] as RunningServer).url;
        const res = await rawRequest(
          url,
          requestsWith(wrongKeys.revoked?.() ?? '')[0]?.[1] as RawRequest,
        );
        return res.body.toString();
      }),
    );
    expect(bodies[1]).toBe(bodies[0]);
    expect(bodies[2]).toBe(bodies[0]);
  });
});
