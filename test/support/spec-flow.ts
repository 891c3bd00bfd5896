import { sendRequest } from '@keyward/testing';
import { expect } from 'vitest';

/**
 * Every curl of the README against a running server, with the statuses and bodies of
 * docs/design.md's HTTP contract: create, list, rename, revoke, and the host's own
 * guarded route.
 */
export async function runSpecFlow(url: string, rawKey: string): Promise<void> {
  const key = { 'X-API-Key': rawKey };
  const created = await sendRequest(url, {
    method: 'POST',
    path: '/v1/api-keys',
    headers: { ...key, 'Content-Type': 'application/json' },
    body: '{"name": "My New Key"}',
  });
  expect(created.status).toBe(201);
  const data = (created.json as { data: Record<string, string | null> }).data;
  expect(data).toMatchObject({ name: 'My New Key', lastUsedAt: null });
  expect(data.rawKey).toMatch(/^rep_[0-9A-Za-z]{50}$/);

  const list = await sendRequest(url, { path: '/v1/api-keys', headers: key });
  expect(list.status).toBe(200);
  const listed = (list.json as { data: Array<Record<string, unknown>> }).data;
  expect(listed[0]).toMatchObject({ id: data.id, name: 'My New Key' });
  expect(list.text).not.toContain(data.rawKey);

  const renamed = await sendRequest(url, {
    method: 'PATCH',
    path: `/v1/api-keys/${data.id}`,
    headers: { ...key, 'Content-Type': 'application/json' },
    body: '{"name": "Staging Server"}',
  });
  expect(renamed.status).toBe(200);
  expect((renamed.json as { data: { name: string } }).data.name).toBe('Staging Server');

  const hello = await sendRequest(url, {
    path: '/v1/hello',
    headers: { 'X-API-Key': data.rawKey as string },
  });
  expect(hello.status).toBe(200);

  const revoked = await sendRequest(url, {
    method: 'DELETE',
    path: `/v1/api-keys/${data.id}`,
    headers: key,
  });
  expect(revoked.status).toBe(200);
  expect(revoked.text).toBe('{"success":true}');

  const after = await sendRequest(url, {
    path: '/v1/hello',
    headers: { 'X-API-Key': data.rawKey as string },
  });
  expect(after.status).toBe(401);
  expect((after.json as { error: { code: string } }).error.code).toBe('invalid_api_key');

  const missing = await sendRequest(url, { path: '/v1/api-keys' });
  expect(missing.status).toBe(401);
}
