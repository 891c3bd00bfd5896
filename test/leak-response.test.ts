import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createKeyService,
  generateKey,
  type HttpOptions,
  type KeyStore,
  type LeakEvent,
  memoryStore,
} from '@keyward/core';
import { CHEAP_ARGON2, openApiResponseChecker, sendRequest } from '@keyward/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer } from './support/servers.js';

// A P-256 key pair standing in for GitHub's, and the public-key document GitHub serves.
const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const IDENTIFIER = 'kw-loopback-key';
const PUBLIC_KEYS = {
  public_keys: [
    {
      key_identifier: IDENTIFIER,
      key: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      is_current: true,
    },
  ],
};
const LEAK_ROUTES: HttpOptions = {
  leaks: { github: { publicKeys: PUBLIC_KEYS }, reportRoute: true },
};

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A store whose findByLookup calls are counted: each is one store read a request caused. */
function countingStore() {
  const inner = memoryStore();
  let reads = 0;
  const store: KeyStore = {
    ...inner,
    findByLookup: (lookup) => {
      reads++;
      return inner.findByLookup(lookup);
    },
  };
  return { inner, store, reads: () => reads };
}

async function host(adapter: keyof typeof startServer, store: KeyStore, events: LeakEvent[]) {
  const service = createKeyService({
    store,
    argon2: CHEAP_ARGON2,
    leaks: { onLeak: (event) => void events.push(event) },
  });
  const server = await startServer[adapter]({
    service,
    guardedPath: '/test/me',
    httpOptions: LEAK_ROUTES,
  });
  closers.push(() => service.close(), server.close);
  // The document this host serves lists both leak routes: their answers must match it.
  const described = await sendRequest(server.url, { path: '/v1/api-keys/openapi.json' });
  const check = openApiResponseChecker(described.json as Record<string, unknown>);
  const matchesApi = (
    method: string,
    path: string,
    answer: { status: number; json: unknown },
  ): string[] => check({ method, path, status: answer.status, json: answer.json });
  return { service, url: server.url, matchesApi };
}

describe.each(['express', 'fastify', 'hono'] as const)('leak response over %s', (adapter) => {
  it('verifies the signature over the raw bytes and quarantines a real key; a tampered body is 401', async () => {
    const { inner, store } = countingStore();
    const events: LeakEvent[] = [];
    const { service, url, matchesApi } = await host(adapter, store, events);
    const real = await service.create('acct_1', 'prod');
    // Spacing and an escaped character that a parse-and-serialize would not give back: the
    // signature holds only over the bytes as sent.
    const body = `[ {"token": "${real.rawKey}", "type":"keyward_api_key", "url":"https://github.com/o/r/blob/x/\\u00e9.env", "source":"content"} ]`;
    const headers = {
      'Content-Type': 'application/json',
      'GITHUB-PUBLIC-KEY-IDENTIFIER': IDENTIFIER,
      'GITHUB-PUBLIC-KEY-SIGNATURE': sign('sha256', Buffer.from(body), pair.privateKey).toString(
        'base64',
      ),
    };
    const tampered = await sendRequest(url, {
      method: 'POST',
      path: '/v1/api-keys/leaks/github',
      headers,
      body: body.replace('content', 'CONTENT'),
    });
    expect(tampered.status).toBe(401);
    expect(matchesApi('POST', '/v1/api-keys/leaks/github', tampered)).toEqual([]);
    expect(inner.snapshot()[0]?.leakedAt).toBeNull();

    const answer = await sendRequest(url, {
      method: 'POST',
      path: '/v1/api-keys/leaks/github',
      headers,
      body,
    });
    expect(answer.status).toBe(200);
    expect(matchesApi('POST', '/v1/api-keys/leaks/github', answer)).toEqual([]);
    expect(answer.json).toEqual([
      {
        token_hash: createHash('sha256').update(real.rawKey).digest('hex'),
        token_type: 'keyward_api_key',
        label: 'true_positive',
      },
    ]);
    expect(inner.snapshot()[0]).toMatchObject({ leakSource: 'github' });
    expect(events).toMatchObject([{ keyId: real.id, url: 'https://github.com/o/r/blob/x/é.env' }]);
    // Management from the leaked key is refused from now on.
    const list = await sendRequest(url, {
      path: '/v1/api-keys',
      headers: { 'X-API-Key': real.rawKey },
    });
    expect(list.status).toBe(403);
  });

  it('the report route answers the same bytes for a real key and a fake one', async () => {
    const { inner, store } = countingStore();
    const { service, url, matchesApi } = await host(adapter, store, []);
    const real = await service.create('acct_1', 'prod');
    const send = (key: string) =>
      sendRequest(url, { method: 'POST', path: '/v1/api-keys/report-leak', body: { keys: [key] } });
    const forReal = await send(real.rawKey);
    const forFake = await send(generateKey().rawKey);
    const strip = (headers: Record<string, unknown>) => {
      const { date: _date, ...rest } = headers;
      return rest;
    };
    expect(forReal.status).toBe(202);
    expect(matchesApi('POST', '/v1/api-keys/report-leak', forReal)).toEqual([]);
    expect([forFake.status, forFake.text, strip(forFake.headers)]).toEqual([
      forReal.status,
      forReal.text,
      strip(forReal.headers),
    ]);
    for (let i = 0; i < 100 && inner.snapshot()[0]?.leakedAt === null; i++) await sleep(10);
    expect(inner.snapshot()[0]).toMatchObject({ leakSource: 'report' });
  });
});

describe('leak response: a report flood from one client', () => {
  it('is held to 10 requests a minute, and guarded traffic all goes through meanwhile', async () => {
    const { store, reads } = countingStore();
    const { service, url, matchesApi } = await host('express', store, []);
    const real = await service.create('acct_1', 'prod');
    const guarded = () =>
      sendRequest(url, { path: '/test/me', headers: { 'X-API-Key': real.rawKey } });
    expect((await guarded()).status).toBe(200);
    const readsBefore = reads();

    // Every report holds 100 well-formed keys: each passes the checksum, so each costs a
    // store read unless the rate limit stops the request.
    const flood = Array.from({ length: 300 }, () =>
      sendRequest(url, {
        method: 'POST',
        path: '/v1/api-keys/report-leak',
        body: { keys: Array.from({ length: 100 }, () => generateKey().rawKey) },
      }),
    );
    const traffic = Array.from({ length: 200 }, guarded);
    const [reports, answers] = await Promise.all([Promise.all(flood), Promise.all(traffic)]);

    const statuses = reports.map((r) => r.status);
    expect(statuses.filter((s) => s === 202)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(290);
    const refused = reports.find((r) => r.status === 429);
    expect(refused && matchesApi('POST', '/v1/api-keys/report-leak', refused)).toEqual([]);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    // Let the background checks finish: at most the 10 admitted requests' keys were read.
    for (let last = -1; reads() !== last; ) {
      last = reads();
      await sleep(50);
    }
    expect(reads() - readsBefore).toBeLessThanOrEqual(10 * 100);
    expect(reads() - readsBefore).toBeGreaterThan(0);
  });
});
