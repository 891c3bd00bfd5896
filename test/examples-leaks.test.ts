import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { sendRequest } from '@keyward/testing';
import { describe, expect, it } from 'vitest';
import { startExample } from './support/example-process.js';

// A key pair made here stands in for GitHub's: its public half goes to the example in
// GITHUB_SECRET_SCANNING_KEYS, in the shape GitHub's public-key endpoint serves.
const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const GITHUB_SECRET_SCANNING_KEYS = JSON.stringify({
  public_keys: [
    {
      key_identifier: 'local-test-key',
      key: pair.publicKey.export({ type: 'spki', format: 'pem' }),
      is_current: true,
    },
  ],
});

describe.each(['express', 'fastify', 'hono'] as const)(
  'examples/%s: leak response',
  (framework) => {
    it('takes GitHub alerts signed by the keys in GITHUB_SECRET_SCANNING_KEYS and quarantines a real key', async () => {
      const app = await startExample(framework, { GITHUB_SECRET_SCANNING_KEYS });
      try {
        const rawKey = app.bootstrap.get('demo') ?? '';
        const body = JSON.stringify([
          {
            token: rawKey,
            type: 'keyward_api_key',
            url: 'https://github.com/o/r',
            source: 'content',
          },
        ]);
        const signed = (signature: string) =>
          sendRequest(app.url, {
            method: 'POST',
            path: '/v1/api-keys/leaks/github',
            headers: {
              'Content-Type': 'application/json',
              'GITHUB-PUBLIC-KEY-IDENTIFIER': 'local-test-key',
              'GITHUB-PUBLIC-KEY-SIGNATURE': signature,
            },
            body,
          });
        expect((await signed(Buffer.alloc(70).toString('base64'))).status).toBe(401);
        const answer = await signed(
          sign('sha256', Buffer.from(body), pair.privateKey).toString('base64'),
        );
        expect(answer.status).toBe(200);
        expect(answer.json).toEqual([
          {
            token_hash: createHash('sha256').update(rawKey).digest('hex'),
            token_type: 'keyward_api_key',
            label: 'true_positive',
          },
        ]);
        expect(app.output()).toMatch(
          /reported leaked by github at https:\/\/github.com\/o\/r: quarantine/,
        );
        // The bootstrap key is printed once, on start; the leak log line never holds it.
        const afterStart = app.output().split('Ctrl-C stops the server.')[1] ?? '';
        expect(afterStart).toContain('reported leaked');
        expect(afterStart).not.toContain(rawKey.slice(8));
        // Still works on the host's route during the grace hour; manages nothing.
        const hello = await sendRequest(app.url, {
          path: '/v1/hello',
          headers: { 'X-API-Key': rawKey },
        });
        expect(hello.status).toBe(200);
        expect(hello.json).toMatchObject({ data: { apiKey: { leakSource: 'github' } } });
        const list = await sendRequest(app.url, {
          path: '/v1/api-keys',
          headers: { 'X-API-Key': rawKey },
        });
        expect(list.status).toBe(403);
      } finally {
        await app.stop();
      }
    });
  },
);
