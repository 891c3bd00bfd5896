/**
 * The same request gets the same status, headers and JSON from Express, Fastify and Hono.
 * Each adapter gets its own account, made the same way on one shared service; answers are
 * compared with that account's ids, keys and times replaced by placeholders.
 */
import { createKeyService, generateKey, memoryStore } from '@keyward/core';
import { CHEAP_ARGON2, type RunningServer, sendRequest, type TestRequest } from '@keyward/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RawRequest, type RawResponse, rawRequest } from './support/raw-http.js';
import { startServer } from './support/servers.js';

const service = createKeyService({
  store: memoryStore(),
  argon2: CHEAP_ARGON2,
  maxKeysPerOwner: 4,
});
const adapters = ['express', 'fastify', 'hono'] as const;
type Adapter = (typeof adapters)[number];
const servers: Record<Adapter, RunningServer> = {} as never;

interface Fixture {
  key: string;
  /** A second key of the account, to rename and revoke. */
  spareId: string;
  spareKey: string;
  /** Another account's key id. */
  foreignId: string;
  /** A third account for the lifecycle requests, with room under the cap: its `*` key,
   * a key made by that key (for the cascade), and one that may only read. */
  v2Key: string;
  v2Id: string;
  v2ChildId: string;
  readerKey: string;
  readerId: string;
  /** A key of a fourth account that holds no management scope at all. */
  ordersKey: string;
}

function nextMillisecond(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 2));
}

async function fixture(label: string): Promise<Fixture> {
  const main = await service.create(`${label}-acct`, 'main');
  await nextMillisecond();
  const spare = await service.create(`${label}-acct`, 'spare');
  const foreign = await service.create(`${label}-other`, 'other');
  // A list is newest first, then by id (random) for keys made in the same millisecond: one
  // millisecond apart, the two accounts list their keys in the same order.
  const v2 = await service.create(`${label}-v2`, 'v2 main');
  await nextMillisecond();
  const child = await service.create(`${label}-v2`, 'child', { createdBy: v2.id });
  await nextMillisecond();
  const reader = await service.create(`${label}-v2`, 'reader', { scopes: ['api_keys:read'] });
  const orders = await service.create(`${label}-v2o`, 'orders', { scopes: ['orders:read'] });
  return {
    key: main.rawKey,
    spareId: spare.id,
    spareKey: spare.rawKey,
    foreignId: foreign.id,
    v2Key: v2.rawKey,
    v2Id: v2.id,
    v2ChildId: child.id,
    readerKey: reader.rawKey,
    readerId: reader.id,
    ordersKey: orders.rawKey,
  };
}

const headersCompared = [
  'content-type',
  'content-length',
  'cache-control',
  'allow',
  'www-authenticate',
  'retry-after',
];

function requests(f: Fixture): Array<[string, TestRequest]> {
  const k = { 'X-API-Key': f.key };
  const json = { ...k, 'Content-Type': 'application/json' };
  const unknownKey = generateKey().rawKey;
  const list: Array<[string, TestRequest]> = [
    ['list', { path: '/v1/api-keys', headers: k }],
    ['head', { method: 'HEAD', path: '/v1/api-keys', headers: k }],
    ['list with query', { path: '/v1/api-keys?limit=1', headers: k }],
    ['list, trailing slash', { path: '/v1/api-keys/', headers: k }],
    ['no key', { path: '/v1/api-keys' }],
    ['empty key', { path: '/v1/api-keys', headers: { 'X-API-Key': '' } }],
    ['garbage key', { path: '/v1/api-keys', headers: { 'X-API-Key': 'garbage' } }],
    ['unknown key', { path: '/v1/api-keys', headers: { 'X-API-Key': unknownKey } }],
    ['two keys', { path: '/v1/api-keys', headers: { 'X-API-Key': [f.key, f.key] } }],
    [
      'rename spare',
      {
        method: 'PATCH',
        path: `/v1/api-keys/${f.spareId}`,
        headers: json,
        body: '{"name":"renamed"}',
      },
    ],
    [
      'rename foreign',
      { method: 'PATCH', path: `/v1/api-keys/${f.foreignId}`, headers: json, body: '{"name":"x"}' },
    ],
    [
      'rename bad name',
      { method: 'PATCH', path: `/v1/api-keys/${f.spareId}`, headers: json, body: '{"name":""}' },
    ],
    [
      'rename bad json',
      { method: 'PATCH', path: `/v1/api-keys/${f.spareId}`, headers: json, body: '{' },
    ],
    [
      'rename text/plain',
      {
        method: 'PATCH',
        path: `/v1/api-keys/${f.spareId}`,
        headers: { ...k, 'Content-Type': 'text/plain' },
        body: '{}',
      },
    ],
    ['create no body', { method: 'POST', path: '/v1/api-keys', headers: k }],
    ['create empty json', { method: 'POST', path: '/v1/api-keys', headers: json, body: '' }],
    ['create array', { method: 'POST', path: '/v1/api-keys', headers: json, body: '[]' }],
    [
      'create huge',
      {
        method: 'POST',
        path: '/v1/api-keys',
        headers: json,
        body: `{"name":"${'x'.repeat(20_000)}"}`,
      },
    ],
    [
      'create latin1',
      {
        method: 'POST',
        path: '/v1/api-keys',
        headers: { ...k, 'Content-Type': 'application/json; charset=latin1' },
        body: '{}',
      },
    ],
    [
      'create form',
      {
        method: 'POST',
        path: '/v1/api-keys',
        headers: { ...k, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'name=x',
      },
    ],
    [
      'create ok',
      { method: 'POST', path: '/v1/api-keys', headers: json, body: '{"name":"third"}' },
    ],
    [
      'create ok 2',
      { method: 'POST', path: '/v1/api-keys', headers: json, body: '{"name":"fourth"}' },
    ],
    [
      'create at cap',
      { method: 'POST', path: '/v1/api-keys', headers: json, body: '{"name":"fifth"}' },
    ],
    ['put collection', { method: 'PUT', path: '/v1/api-keys', headers: k }],
    ['options collection', { method: 'OPTIONS', path: '/v1/api-keys' }],
    ['get item', { path: `/v1/api-keys/${f.spareId}`, headers: k }],
    ['deep path', { path: '/v1/api-keys/a/b/c', headers: k }],
    ['bad escape', { method: 'DELETE', path: '/v1/api-keys/%ZZ', headers: k }],
    ['encoded slash', { method: 'DELETE', path: '/v1/api-keys/key_a%2Fb', headers: k }],
    [
      'unicode id',
      { method: 'DELETE', path: `/v1/api-keys/${encodeURIComponent('ключ')}`, headers: k },
    ],
    ['traversal', { method: 'DELETE', path: '/v1/api-keys/..%2F..%2Fetc', headers: k }],
    ['revoke foreign', { method: 'DELETE', path: `/v1/api-keys/${f.foreignId}`, headers: k }],
    ['guard ok', { path: '/test/protected', headers: { 'X-API-Key': f.spareKey } }],
    ['revoke spare', { method: 'DELETE', path: `/v1/api-keys/${f.spareId}`, headers: k }],
    ['guard revoked', { path: '/test/protected', headers: { 'X-API-Key': f.spareKey } }],
    ['revoke spare again', { method: 'DELETE', path: `/v1/api-keys/${f.spareId}`, headers: k }],
    ['guard missing', { path: '/test/protected' }],
    ...lifecycleRequests(f),
  ];
  return list;
}

/** What the lifecycle requests must get: agreeing on a 500 would not do. */
const lifecycleStatuses: Record<string, number> = {
  'create with every field': 201,
  'create with expiresAt and expiresIn': 400,
  'create with a bad scope': 400,
  'create with metadata 4 levels deep': 400,
  'create by a read-only key (scope refusal)': 403,
  'list by a key with no management scope': 403,
  'list by the read-only key': 200,
  'patch metadata and expiresAt': 200,
  'patch scopes': 400,
  'patch nothing': 400,
  'patch expiresAt null': 400,
  'roll at the cap': 409,
  'delete with cascade=false': 200,
  'roll without a body': 201,
  'roll text/plain': 415,
  'roll another account key': 404,
  'get on roll': 405,
  'delete with cascade=maybe': 400,
  'delete with cascade': 200,
  'the cascaded key': 401,
};

/** API v2: the lifecycle fields, roll, cascade and the scope refusals. */
function lifecycleRequests(f: Fixture): Array<[string, TestRequest]> {
  const k = { 'X-API-Key': f.v2Key };
  const json = { ...k, 'Content-Type': 'application/json' };
  const collection = '/v1/api-keys';
  const reader = `/v1/api-keys/${f.readerId}`;
  const inADay = new Date(Date.now() + 86_400_000).toISOString();
  return [
    [
      'create with every field',
      {
        method: 'POST',
        path: collection,
        headers: json,
        body: JSON.stringify({
          name: 'v2',
          expiresIn: 3600,
          scopes: ['orders:read', 'api_keys:read'],
          metadata: { team: 'core', tags: ['a', 'b'], nested: { n: 1 } },
        }),
      },
    ],
    [
      'create with expiresAt and expiresIn',
      {
        method: 'POST',
        path: collection,
        headers: json,
        body: JSON.stringify({ name: 'x', expiresAt: inADay, expiresIn: 3600 }),
      },
    ],
    [
      'create with a bad scope',
      { method: 'POST', path: collection, headers: json, body: '{"name":"x","scopes":["a b"]}' },
    ],
    [
      'create with metadata 4 levels deep',
      {
        method: 'POST',
        path: collection,
        headers: json,
        body: '{"name":"x","metadata":{"a":{"b":{"c":{}}}}}',
      },
    ],
    [
      'create by a read-only key (scope refusal)',
      {
        method: 'POST',
        path: collection,
        headers: { 'X-API-Key': f.readerKey, 'Content-Type': 'application/json' },
        body: '{"name":"x"}',
      },
    ],
    [
      'list by a key with no management scope',
      { path: collection, headers: { 'X-API-Key': f.ordersKey } },
    ],
    ['list by the read-only key', { path: collection, headers: { 'X-API-Key': f.readerKey } }],
    [
      'patch metadata and expiresAt',
      {
        method: 'PATCH',
        path: reader,
        headers: json,
        body: JSON.stringify({ metadata: { owner: 'ops' }, expiresAt: inADay }),
      },
    ],
    ['patch scopes', { method: 'PATCH', path: reader, headers: json, body: '{"scopes":["*"]}' }],
    ['patch nothing', { method: 'PATCH', path: reader, headers: json, body: '{}' }],
    [
      'patch expiresAt null',
      { method: 'PATCH', path: reader, headers: json, body: '{"expiresAt":null}' },
    ],
    [
      'roll at the cap',
      { method: 'POST', path: `${reader}/roll`, headers: json, body: '{"expiresIn":0}' },
    ],
    [
      'delete with cascade=false',
      { method: 'DELETE', path: `/v1/api-keys/${f.v2ChildId}?cascade=false`, headers: k },
    ],
    ['roll without a body', { method: 'POST', path: `${reader}/roll`, headers: k }],
    [
      'roll text/plain',
      {
        method: 'POST',
        path: `${reader}/roll`,
        headers: { ...k, 'Content-Type': 'text/plain' },
        body: '{}',
      },
    ],
    [
      'roll another account key',
      { method: 'POST', path: `/v1/api-keys/${f.foreignId}/roll`, headers: k },
    ],
    ['get on roll', { path: `${reader}/roll`, headers: k }],
    [
      'delete with cascade=maybe',
      { method: 'DELETE', path: `/v1/api-keys/${f.v2Id}?cascade=maybe`, headers: k },
    ],
    [
      'delete with cascade',
      { method: 'DELETE', path: `/v1/api-keys/${f.v2Id}?cascade=true`, headers: k },
    ],
    ['the cascaded key', { path: collection, headers: k }],
  ];
}

/** Replaces what differs between the two accounts by design. */
function normalize(text: string, f: Fixture): string {
  return (
    text
      .replaceAll(f.key, '<key>')
      .replaceAll(f.spareKey, '<spareKey>')
      .replaceAll(f.spareId, '<spareId>')
      .replaceAll(f.foreignId, '<foreignId>')
      .replaceAll(f.v2Key, '<v2Key>')
      .replaceAll(f.v2Id, '<v2Id>')
      .replaceAll(f.v2ChildId, '<v2ChildId>')
      .replaceAll(f.readerKey, '<readerKey>')
      .replaceAll(f.readerId, '<readerId>')
      .replaceAll(f.ordersKey, '<ordersKey>')
      .replace(/-acct|-other/g, '')
      .replace(/(express|fastify|hono-js)(?=")/g, '<label>')
      // createdBy holds the id of the key that made it, which differs between the accounts
      // like every id; the keys a cascade revoked are ids too.
      .replace(/"(id|rawKey|keyPrefix|keySuffix|createdBy)":"[^"]+"/g, '"$1":"<$1>"')
      .replace(/"key_[0-9A-Za-z]+"/g, '"<keyId>"')
      .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>')
  );
}

beforeAll(async () => {
  servers.express = await startServer.express({ service, guardedPath: '/test/protected' });
  servers.fastify = await startServer.fastify({ service, guardedPath: '/test/protected' });
  servers.hono = await startServer.hono({ service, guardedPath: '/test/protected' });
});
afterAll(async () => {
  await servers.express?.close();
  await servers.fastify?.close();
  await servers.hono?.close();
  await service.close();
});

describe('Express, Fastify and Hono agree', () => {
  it('on status, headers and body, request for request', async () => {
    const fixtures = {
      express: await fixture('express'),
      fastify: await fixture('fastify'),
      // As long as the other two labels: the host route's answer names it, and its
      // Content-Length is compared.
      hono: await fixture('hono-js'),
    };
    const plans = {
      express: requests(fixtures.express),
      fastify: requests(fixtures.fastify),
      hono: requests(fixtures.hono),
    };
    expect(plans.express.length).toBeGreaterThan(30);
    for (let i = 0; i < plans.express.length; i++) {
      const answers = [];
      for (const adapter of adapters) {
        const [label, req] = plans[adapter][i] as [string, TestRequest];
        const res = await sendRequest(servers[adapter].url, req);
        const headers = Object.fromEntries(
          headersCompared
            .filter((h) => res.headers[h] !== undefined)
            .map((h) => [h, res.headers[h]]),
        );
        answers.push({
          label,
          status: res.status,
          headers,
          body: normalize(res.text, fixtures[adapter]),
        });
      }
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      const label = answers[0]?.label as string;
      if (label in lifecycleStatuses) {
        expect(answers[0]?.status, label).toBe(lifecycleStatuses[label]);
      }
    }
  });
});

/** A response as it came off the socket, but the Date line, and Express's X-Powered-By
 * (an Express app setting, on every answer it sends, keyward's or not). */
function wireBytes(res: RawResponse): string {
  const head = res.headerLines
    .filter(([name]) => !/^(date|x-powered-by)$/i.test(name))
    .map(([name, value]) => `${name}: ${value}`);
  return `${[res.statusLine, ...head].join('\r\n')}\r\n\r\n${res.body.toString('latin1')}`;
}

describe('Hono sends the bytes Express sends', () => {
  it("on keyward's refusals: status line, header names, case and order, and body", async () => {
    const main = await service.create('wire-acct', 'main');
    const reader = await service.create('wire-acct', 'reader', { scopes: ['api_keys:read'] });
    const foreign = await service.create('wire-other', 'other');
    const k: [string, string] = ['X-API-Key', main.rawKey];
    const json: [string, string] = ['Content-Type', 'application/json'];
    const requests: Array<[string, RawRequest]> = [
      ['no key', { method: 'GET', target: '/v1/api-keys', headers: [] }],
      [
        'unknown key',
        { method: 'GET', target: '/v1/api-keys', headers: [['X-API-Key', generateKey().rawKey]] },
      ],
      ['unknown route', { method: 'GET', target: '/v1/api-keys/a/b/c', headers: [k] }],
      ['dot segments', { method: 'DELETE', target: '/v1/api-keys/x/..', headers: [k] }],
      ['405 with Allow', { method: 'PUT', target: '/v1/api-keys', headers: [k] }],
      ['bad escape', { method: 'DELETE', target: '/v1/api-keys/%ZZ', headers: [k] }],
      ['another account', { method: 'DELETE', target: `/v1/api-keys/${foreign.id}`, headers: [k] }],
      [
        'scope refusal',
        {
          method: 'POST',
          target: '/v1/api-keys',
          headers: [['X-API-Key', reader.rawKey], json],
          body: Buffer.from('{}'),
        },
      ],
      [
        '415',
        {
          method: 'POST',
          target: '/v1/api-keys',
          headers: [k, ['Content-Type', 'text/plain']],
          body: Buffer.from('{}'),
        },
      ],
      [
        'two Content-Types, the first JSON',
        {
          method: 'POST',
          target: '/v1/api-keys',
          headers: [k, json, ['Content-Type', 'text/plain']],
          body: Buffer.from('{'),
        },
      ],
      [
        '413, connection closed',
        {
          method: 'POST',
          target: '/v1/api-keys',
          headers: [k, json],
          body: Buffer.alloc(20_000, 32),
        },
      ],
      [
        '413 chunked',
        {
          method: 'POST',
          target: '/v1/api-keys',
          headers: [k, json],
          body: Buffer.alloc(20_000, 32),
          chunkSize: 4096,
        },
      ],
      [
        'bad JSON',
        {
          method: 'POST',
          target: '/v1/api-keys',
          headers: [k, json],
          body: Buffer.from('{"name":'),
        },
      ],
      [
        'cascade=maybe',
        { method: 'DELETE', target: `/v1/api-keys/${main.id}?cascade=maybe`, headers: [k] },
      ],
      ['guard, no key', { method: 'GET', target: '/test/protected', headers: [] }],
      [
        'guard, reader key',
        { method: 'GET', target: '/test/orders', headers: [['X-API-Key', reader.rawKey]] },
      ],
    ];
    for (const [label, req] of requests) {
      const express = wireBytes(await rawRequest(servers.express.url, req));
      const hono = wireBytes(await rawRequest(servers.hono.url, req));
      expect(hono, label).toBe(express);
      expect(express, label).toMatch(/^HTTP\/1\.1 4\d\d /);
    }
  });
});
