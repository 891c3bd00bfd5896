/**
 * Limits, on both adapters: each answers with its status from docs/design.md, nothing crashes, and
 * the server keeps serving afterwards. Where Node answers before any framework sees the
 * request (a header section over its 16 KiB limit, bytes its parser refuses), keyward
 * cannot answer at all: those tests pin down only that the server survives them.
 */
import { randomUUID } from 'node:crypto';
import { Agent, request as httpRequest, maxHeaderSize } from 'node:http';
import { createKeyService, errorCodes, memoryStore } from '@keyward/core';
import { CHEAP_ARGON2, errorBody, type RunningServer, sendRequest } from '@keyward/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exchange, type RawRequest, rawRequest } from './support/raw-http.js';
import { startServer } from './support/servers.js';

const CAP = 5;
const GUARDED_PATH = '/test/protected';
const BASE = '/v1/api-keys';

describe.each(['express', 'fastify'] as const)('%s: limits', (adapter) => {
  const service = createKeyService({
    store: memoryStore(),
    maxKeysPerOwner: CAP,
    argon2: CHEAP_ARGON2,
  });
  let server: RunningServer;
  let healthKey: string;

  beforeAll(async () => {
    server = await startServer[adapter]({ service, guardedPath: GUARDED_PATH });
    healthKey = (await service.create('health', 'health')).rawKey;
  });
  afterAll(async () => {
    await server?.close();
    await service.close();
  });

  /** A fresh account with one key. */
  async function account() {
    const ownerId = `limits-${randomUUID()}`;
    const { rawKey, id } = await service.create(ownerId, 'bootstrap');
    return { ownerId, rawKey, id };
  }

  async function expectStillServing(): Promise<void> {
    const res = await sendRequest(server.url, {
      path: GUARDED_PATH,
      headers: { 'X-API-Key': healthKey },
    });
    expect(res.status, 'the server still answers').toBe(200);
  }

  function post(rawKey: string, body: Buffer, chunkSize?: number): RawRequest {
    return {
      method: 'POST',
      target: BASE,
      headers: [
        ['X-API-Key', rawKey],
        ['Content-Type', 'application/json'],
      ],
      body,
      ...(chunkSize === undefined ? {} : { chunkSize }),
    };
  }

  const jsonOfSize = (bytes: number) => Buffer.from(`{"name":"${'x'.repeat(bytes - 11)}"}`);

  describe('request body', () => {
    it('over 16 KiB with a Content-Length: 413 payload_too_large, nothing created', async () => {
      const { rawKey, ownerId } = await account();
      const res = await rawRequest(server.url, post(rawKey, jsonOfSize(16 * 1024 + 1)));
      expect(res.status).toBe(413);
      expect(res.body.toString()).toBe(errorBody('payload_too_large'));
      expect(await service.list(ownerId)).toHaveLength(1);
      await expectStillServing();
    });

    it('over 16 KiB, chunked without a Content-Length: 413 payload_too_large', async () => {
      const { rawKey, ownerId } = await account();
      const res = await rawRequest(server.url, post(rawKey, jsonOfSize(40_000), 4096));
      expect(res.status).toBe(413);
      expect(res.body.toString()).toBe(errorBody('payload_too_large'));
      expect(await service.list(ownerId)).toHaveLength(1);
      await expectStillServing();
    });

    it('of exactly 16 KiB, chunked or not: accepted', async () => {
      const { rawKey } = await account();
      const body = Buffer.from(`{"name":"edge","pad":"${'p'.repeat(16 * 1024 - 24)}"}`);
      expect(body.byteLength).toBe(16 * 1024);
      expect((await rawRequest(server.url, post(rawKey, body))).status).toBe(201);
      expect((await rawRequest(server.url, post(rawKey, body, 1000))).status).toBe(201);
    });

    it('a 413 halfway through a body does not hold up the kept-alive connection', async () => {
      // Core stops reading at the limit. Left open, the connection still carries the rest
      // of the body, and Node stops reading it for good: the next request on it would
      // wait forever. Fastify showed it with small chunks; the answer now closes it.
      const { rawKey } = await account();
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await viaAgent(agent, {
          method: 'POST',
          path: BASE,
          headers: {
            'X-API-Key': rawKey,
            'Content-Type': 'application/json',
            'Transfer-Encoding': 'chunked',
          },
          body: jsonOfSize(20_000),
          chunkSize: 10,
        });
        expect(first.status).toBe(413);
        const next = await viaAgent(agent, {
          method: 'GET',
          path: GUARDED_PATH,
          headers: { 'X-API-Key': healthKey },
        });
        expect(next.status).toBe(200);
      } finally {
        agent.destroy();
      }
    });
  });

  describe('request head', () => {
    it(`a key header over Node's ${maxHeaderSize}-byte limit: 431 from Node, before any framework; the server keeps serving`, async () => {
      const huge = `rep_${'A'.repeat(maxHeaderSize)}`;
      const res = await rawRequest(server.url, {
        method: 'GET',
        target: BASE,
        headers: [['X-API-Key', huge]],
      });
      // Express leaves the answer to Node (no body); Fastify's clientErrorHandler adds a
      // JSON body of its own. Neither repeats the header.
      expect(res.status).toBe(431);
      expect(res.bytes.toString('latin1')).not.toContain('AAAAAAAA');
      await expectStillServing();
    });

    it('a request target over the limit: 431 too, and the server keeps serving', async () => {
      const res = await rawRequest(server.url, {
        method: 'DELETE',
        target: `${BASE}/${'k'.repeat(maxHeaderSize)}`,
        headers: [['X-API-Key', healthKey]],
      });
      expect(res.status).toBe(431);
      await expectStillServing();
    });

    it('a key header just under the limit reaches keyward: 401 invalid_api_key', async () => {
      const res = await rawRequest(server.url, {
        method: 'GET',
        target: BASE,
        headers: [['X-API-Key', `rep_${'A'.repeat(maxHeaderSize - 1024)}`]],
      });
      expect(res.status).toBe(401);
      expect(res.body.toString()).toBe(errorBody('invalid_api_key'));
    });

    it("what Node's parser refuses never reaches keyward: a 400 from Node, and the server keeps serving", async () => {
      const cases: Array<[string, Buffer]> = [
        ['a control character in the key', head(`GET ${BASE}`, 'X-API-Key: rep_\x01x')],
        ['DEL in the key', head(`GET ${BASE}`, 'X-API-Key: rep_\x7fx')],
        [
          'raw UTF-8 in the path',
          Buffer.concat([
            Buffer.from(`DELETE ${BASE}/`),
            Buffer.from('ключ'),
            head('', `X-API-Key: ${healthKey}`),
          ]),
        ],
        ['an unknown method', head(`FETCH ${BASE}`, `X-API-Key: ${healthKey}`)],
        [
          'Content-Length and chunked at once',
          head(
            `POST ${BASE}`,
            `X-API-Key: ${healthKey}`,
            'Content-Length: 2',
            'Transfer-Encoding: chunked',
          ),
        ],
      ];
      for (const [label, bytes] of cases) {
        const res = await exchange(server.url, bytes);
        expect(res.status, label).toBe(400);
        await expectStillServing();
      }
    });

    it('a method Node knows but the framework may not route (PROPFIND): never a 5xx', async () => {
      // Express hands every method to keyward: 405 with Allow. Fastify routes only the
      // methods it supports (addHttpMethod adds more) and answers the others with its own
      // 404 before any plugin runs.
      const res = await sendRequest(server.url, {
        method: 'PROPFIND',
        path: BASE,
        headers: { 'X-API-Key': healthKey },
      });
      if (adapter === 'express') expect(res.status).toBe(405);
      expect(res.status).toBeLessThan(500);
      await expectStillServing();
    });
  });

  describe('names', () => {
    it('up to 100 code points after trimming pass; 101 answer 400 invalid_request', async () => {
      const { rawKey, id, ownerId } = await account();
      const create = (name: string) =>
        sendRequest(server.url, {
          method: 'POST',
          path: BASE,
          headers: { 'X-API-Key': rawKey },
          body: { name },
        });
      for (const name of ['a'.repeat(100), '🔑'.repeat(100), ` ${'b'.repeat(100)}\t`]) {
        const res = await create(name);
        expect(res.status, `${name.length} UTF-16 units`).toBe(201);
        expect((res.json as { data: { name: string } }).data.name).toBe(name.trim());
      }
      for (const name of ['a'.repeat(101), '🔑'.repeat(101), 'é'.repeat(101)]) {
        const res = await create(name);
        expect(res.status).toBe(400);
        expect(res.json).toEqual({
          success: false,
          error: { code: 'invalid_request', message: '`name` must be at most 100 characters.' },
        });
      }
      const rename = await sendRequest(server.url, {
        method: 'PATCH',
        path: `${BASE}/${id}`,
        headers: { 'X-API-Key': rawKey },
        body: { name: 'c'.repeat(101) },
      });
      expect(rename.status).toBe(400);
      expect((await service.list(ownerId)).find((k) => k.id === id)?.name).toBe('bootstrap');
      await expectStillServing();
    });
  });

  describe('keys per account', () => {
    it(`past the cap of ${CAP}, concurrent creates answer 409 key_limit_reached and exactly ${CAP} keys remain`, async () => {
      const { rawKey, ownerId } = await account();
      const answers = await Promise.all(
        Array.from({ length: CAP + 3 }, (_, i) =>
          sendRequest(server.url, {
            method: 'POST',
            path: BASE,
            headers: { 'X-API-Key': rawKey },
            body: { name: `key ${i}` },
          }),
        ),
      );
      const statuses = answers.map((a) => a.status).sort();
      expect(statuses).toEqual([...Array(CAP - 1).fill(201), ...Array(4).fill(409)]);
      for (const res of answers.filter((a) => a.status === 409)) {
        expect(res.text).toBe(errorBody('key_limit_reached'));
        expect(res.status).toBe(errorCodes.key_limit_reached.status);
      }
      expect(await service.list(ownerId)).toHaveLength(CAP);
      await expectStillServing();
    });
  });

  function head(requestLine: string, ...headers: string[]): Buffer {
    const host = new URL(server.url).host;
    return Buffer.from(
      `${requestLine} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`,
      'latin1',
    );
  }

  function viaAgent(
    agent: Agent,
    req: {
      method: string;
      path: string;
      headers: Record<string, string>;
      body?: Buffer;
      chunkSize?: number;
    },
  ): Promise<{ status: number }> {
    const url = new URL(server.url);
    return new Promise((resolve, reject) => {
      const r = httpRequest(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method: req.method,
          path: req.path,
          headers: req.headers,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        },
      );
      r.setTimeout(5_000, () =>
        r.destroy(new Error('no answer within 5 s: the connection is stuck')),
      );
      r.on('error', reject);
      const { body, chunkSize = body?.byteLength ?? 0 } = req;
      if (body)
        for (let at = 0; at < body.byteLength; at += chunkSize)
          r.write(body.subarray(at, at + chunkSize));
      r.end();
    });
  }
});
