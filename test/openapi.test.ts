import { createKeyService, keyToJson, memoryStore, openApiDocument } from '@keyward/core';
import { CHEAP_ARGON2, openApiResponseChecker } from '@keyward/testing';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { describe, expect, it } from 'vitest';

/** Redocly's recommended rules, with the structural spec check as the one that matters. */
async function problems(document: unknown) {
  const config = await createConfig({
    extends: ['recommended'],
    rules: {
      // The license is the host's API's, not keyward's to state.
      'info-license': 'off',
      // The document's own route answers no 4xx.
      'operation-4xx-response': 'off',
    },
  });
  const found = await lintFromString({
    source: JSON.stringify(document),
    absoluteRef: 'openapi.json',
    config,
  });
  return found.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`);
}

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document with no lint error or warning (default mount)', async () => {
    expect(await problems(openApiDocument())).toEqual([]);
  });

  it('the validator does find a broken document (so an empty list means something)', async () => {
    const broken = { ...openApiDocument(), info: undefined };
    expect((await problems(broken)).join('\n')).toMatch(/info/);
  });

  it('honours the mount path, the header name and the dashboard, and still validates', async () => {
    const document = openApiDocument({
      mountPath: '/admin/keys/',
      headerName: 'X-Service-Token',
      dashboard: true,
      leaks: { github: true, reportRoute: true },
    }) as {
      paths: Record<string, unknown>;
      components: { securitySchemes: { apiKey: { name: string } } };
    };
    expect(Object.keys(document.paths).sort()).toEqual([
      '/admin/keys',
      '/admin/keys/dashboard',
      '/admin/keys/leaks/github',
      '/admin/keys/openapi.json',
      '/admin/keys/report-leak',
      '/admin/keys/{id}',
      '/admin/keys/{id}/roll',
    ]);
    expect(document.components.securitySchemes.apiKey.name).toBe('X-Service-Token');
    expect(await problems(document)).toEqual([]);
  });

  it('lists every error code a route can answer, by status, with forbidden_origin on writes only', () => {
    const document = openApiDocument() as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    const codes = (path: string, method: string, status: string) =>
      (
        (document.paths[path]?.[method]?.responses[status] ?? {}) as {
          content: Record<
            string,
            { schema: { properties: { error: { properties: { code: { enum: string[] } } } } } }
          >;
        }
      ).content['application/json']?.schema.properties.error.properties.code.enum;
    expect(codes('/v1/api-keys', 'post', '403')).toEqual([
      'insufficient_scope',
      'forbidden_origin',
    ]);
    expect(codes('/v1/api-keys', 'get', '403')).toEqual(['insufficient_scope']);
    expect(codes('/v1/api-keys', 'post', '400')).toEqual(['invalid_json', 'invalid_request']);
    expect(codes('/v1/api-keys/{id}', 'patch', '429')).toEqual([
      'rate_limited',
      'credits_exhausted',
    ]);
    expect(codes('/v1/api-keys', 'get', '429')).toEqual(['rate_limited', 'credits_exhausted']);
    expect(codes('/v1/api-keys/{id}/roll', 'post', '409')).toEqual(['key_limit_reached']);
  });

  it('the checker the contract suite uses catches an answer the document does not allow', async () => {
    const check = openApiResponseChecker(openApiDocument());
    // A key as the API lists it.
    const service = createKeyService({ store: memoryStore(), argon2: CHEAP_ARGON2 });
    await service.create('acct_1', 'a');
    const [listed] = await service.list('acct_1');
    await service.close();
    if (!listed) throw new Error('the key was not listed');
    const key = keyToJson(listed);
    expect(
      check({
        method: 'GET',
        path: '/v1/api-keys',
        status: 200,
        json: { success: true, data: [key] },
      }),
    ).toEqual([]);
    // A raw key in a list, an unknown field, a missing one, a status not documented.
    expect(
      check({
        method: 'GET',
        path: '/v1/api-keys',
        status: 200,
        json: { success: true, data: [{ ...key, rawKey: 'x' }] },
      }),
    ).not.toEqual([]);
    const { createdBy: _, ...missing } = key;
    expect(
      check({
        method: 'GET',
        path: '/v1/api-keys?x=1',
        status: 200,
        json: { success: true, data: [missing] },
      }),
    ).not.toEqual([]);
    expect(check({ method: 'GET', path: '/v1/api-keys', status: 409, json: {} })).not.toEqual([]);
    expect(
      check({
        method: 'DELETE',
        path: '/v1/api-keys/k_1',
        status: 404,
        json: { success: false, error: { code: 'forbidden_origin', message: 'x' } },
      }),
    ).not.toEqual([]);
    // Outside the mount path: not the document's business.
    expect(check({ method: 'GET', path: '/v1/hello', status: 200, json: {} })).toEqual([]);
  });

  it('documents the limit fields with their ranges, and the limit headers on key routes only', () => {
    const check = openApiDocument({ leaks: { github: true, reportRoute: true } });
    const matches = openApiResponseChecker(check);
    const key = {
      id: 'k_1',
      name: 'a',
      keyPrefix: 'kw_',
      keySuffix: 'abcd',
      lastUsedAt: null,
      createdAt: '2026-01-01T00:00:00.000Z',
      expiresAt: '2026-01-01T01:00:00.000Z',
      scopes: ['*'],
      metadata: {},
      createdBy: null,
      rateLimit: { limit: 100, windowSec: 60 },
      credits: { remaining: 0, refill: { amount: 5, every: 'month' }, strict: false },
      leakedAt: '2026-01-01T00:00:00.000Z',
      leakSource: 'github',
    };
    const list = (data: unknown) =>
      matches({ method: 'GET', path: '/v1/api-keys', status: 200, json: { success: true, data } });
    expect(list([key])).toEqual([]);
    expect(list([{ ...key, rateLimit: { limit: 0, windowSec: 60 } }])).not.toEqual([]);
    expect(list([{ ...key, rateLimit: { limit: 1, windowSec: 86_401 } }])).not.toEqual([]);
    expect(
      list([
        { ...key, credits: { remaining: 1, refill: { amount: 1, every: 'week' }, strict: true } },
      ]),
    ).not.toEqual([]);
    // An answer always shows every credits field.
    expect(list([{ ...key, credits: { remaining: 1 } }])).not.toEqual([]);
    const doc = check as {
      paths: Record<string, Record<string, Record<string, unknown>>>;
    };
    const responses = (path: string, method: string) =>
      doc.paths[path]?.[method]?.responses as Record<string, { headers?: Record<string, unknown> }>;
    expect(Object.keys(responses('/v1/api-keys', 'get')['200']?.headers ?? {})).toEqual([
      'RateLimit-Policy',
      'RateLimit',
    ]);
    expect(Object.keys(responses('/v1/api-keys', 'get')['429']?.headers ?? {})).toEqual([
      'Retry-After',
      'RateLimit-Policy',
      'RateLimit',
    ]);
    expect(responses('/v1/api-keys', 'get')['401']?.headers).not.toHaveProperty('RateLimit');
    // The leak routes take no key: no security, no key errors, no limit headers.
    const github = doc.paths['/v1/api-keys/leaks/github']?.post as {
      security: unknown[];
      responses: Record<string, { headers?: Record<string, unknown> }>;
    };
    expect(github.security).toEqual([]);
    expect(Object.keys(github.responses).sort()).toEqual(
      ['200', '400', '401', '413', '500', '503', 'default'].sort(),
    );
    expect(github.responses['200']?.headers).toBeUndefined();
    expect(
      matches({
        method: 'POST',
        path: '/v1/api-keys/leaks/github',
        status: 401,
        json: { success: false, error: { code: 'invalid_signature', message: 'x' } },
      }),
    ).toEqual([]);
    expect(
      matches({
        method: 'POST',
        path: '/v1/api-keys/report-leak',
        status: 202,
        json: { success: true, data: { received: 2 } },
      }),
    ).toEqual([]);
    // Not served, not documented.
    expect(Object.keys((openApiDocument() as typeof doc).paths)).not.toContain(
      '/v1/api-keys/report-leak',
    );
  });
});
