/**
 * The same request gets the same status, headers and JSON from Express and from Fastify.
 * Each adapter gets its own account, made the same way on one shared service; answers are
 * compared with that account's ids, keys and times replaced by placeholders.
 */
import { createKeyService, generateKey, memoryStore } from '@keyward/core';
import { type RunningServer, sendRequest, type TestRequest } from '@keyward/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from './support/servers.js';

const service = createKeyService({
  store: memoryStore(),
  argon2: { memoryCost: 1024, timeCost: 1, parallelism: 1, allowWeakParameters: true },
  maxKeysPerOwner: 4,
});
const servers: Record<'express' | 'fastify', RunningServer> = {} as never;

interface Fixture {
  key: string;
  /** A second key of the account, to rename and revoke. */
  spareId: string;
  spareKey: string;
  /** Another account's key id. */
  foreignId: string;
}

async function fixture(label: string): Promise<Fixture> {
  const main = await service.create(`${label}-acct`, 'main');
  const spare = await service.create(`${label}-acct`, 'spare');
  const foreign = await service.create(`${label}-other`, 'other');
  return { key: main.rawKey, spareId: spare.id, spareKey: spare.rawKey, foreignId: foreign.id };
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
  ];
  return list;
}

/** Replaces what differs between the two accounts by design. */
function normalize(text: string, f: Fixture): string {
  return text
    .replaceAll(f.key, '<key>')
    .replaceAll(f.spareKey, '<spareKey>')
    .replaceAll(f.spareId, '<spareId>')
    .replaceAll(f.foreignId, '<foreignId>')
    .replace(/-acct|-other/g, '')
    .replace(/(express|fastify)(?=")/g, '<label>')
    .replace(/"(id|rawKey|keyPrefix|keySuffix)":"[^"]+"/g, '"$1":"<$1>"')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>');
}

beforeAll(async () => {
  servers.express = await startServer.express({ service, guardedPath: '/test/protected' });
  servers.fastify = await startServer.fastify({ service, guardedPath: '/test/protected' });
});
afterAll(async () => {
  await servers.express?.close();
  await servers.fastify?.close();
  await service.close();
});

describe('Express and Fastify agree', () => {
  it('on status, headers and body, request for request', async () => {
    const fixtures = { express: await fixture('express'), fastify: await fixture('fastify') };
    const plans = { express: requests(fixtures.express), fastify: requests(fixtures.fastify) };
    expect(plans.express.length).toBeGreaterThan(30);
    for (let i = 0; i < plans.express.length; i++) {
      const answers = [];
      for (const adapter of ['express', 'fastify'] as const) {
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
    }
  });
});
