/**
 * The soak's traffic: a weighted mix of what a keyward host sees (valid keys, every kind of
 * bad key, management calls, keys created, used and revoked), each request with the answer
 * it must get. Anything else is an unexpected response, which the soak reports and fails on.
 */
import { Agent, request } from 'node:http';
import { generateKey, keyChecksum, parseKey } from '@keyward/core';

export interface Outcome {
  /** What was sent, e.g. "valid key" or "create (cap reached)". */
  label: string;
  status: number;
  /** The error code of an error envelope; `undefined` for a success. */
  code: string | undefined;
  expected: boolean;
  ms: number;
}

interface Expectation {
  status: number;
  code?: string;
}

export interface SoakClient {
  /** Sends one request; `status` 0 when no answer came. */
  send(
    method: string,
    path: string,
    headers?: Record<string, string>,
    body?: string,
  ): Promise<{ status: number; code: string | undefined; json: unknown; ms: number }>;
  close(): void;
}

/** Keep-alive HTTP client over loopback with a fixed number of sockets, as a proxy or
 * another service in front of the app would hold. */
export function soakClient(baseUrl: string, connections: number): SoakClient {
  const url = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  return {
    send(method, path, headers = {}, body) {
      const started = performance.now();
      return new Promise((resolve) => {
        const req = request(
          { host: url.hostname, port: url.port, method, path, headers, agent },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              let json: unknown;
              try {
                json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
              } catch {
                json = undefined;
              }
              const code = (json as { error?: { code?: string } } | undefined)?.error?.code;
              resolve({ status: res.statusCode ?? 0, code, json, ms: performance.now() - started });
            });
            res.on('error', () =>
              resolve({ status: 0, code: 'response error', json: undefined, ms: 0 }),
            );
          },
        );
        req.on('error', (error: NodeJS.ErrnoException) =>
          resolve({
            status: 0,
            code: error.code ?? 'request error',
            json: undefined,
            ms: performance.now() - started,
          }),
        );
        req.end(body);
      });
    },
    close: () => agent.destroy(),
  };
}

export interface SoakAccounts {
  /** Holds the keys below; the lifecycle's keys come and go in it. */
  main: string;
  /** Valid keys for guarded traffic. */
  valid: string[];
  /** Keys whose lookup part gets wrong secrets: kept apart from `valid`, because enough
   * wrong secrets put a lookup part in cooldown, its valid key included, by design. */
  victims: string[];
  /** A key of an account at its cap. */
  full: string;
}

interface Action {
  label: string;
  weight: number;
  run(client: SoakClient, accounts: SoakAccounts, n: number): Promise<Outcome[]>;
}

const json = { 'Content-Type': 'application/json' };
const key = (rawKey: string) => ({ 'X-API-Key': rawKey });

async function expect(
  client: SoakClient,
  label: string,
  expected: Expectation | readonly Expectation[],
  method: string,
  path: string,
  headers?: Record<string, string>,
  body?: string,
): Promise<{ outcome: Outcome; json: unknown }> {
  const res = await client.send(method, path, headers, body);
  const allowed = Array.isArray(expected) ? expected : [expected as Expectation];
  const ok = allowed.some((e) => res.status === e.status && res.code === e.code);
  return {
    outcome: { label, status: res.status, code: res.code, expected: ok, ms: res.ms },
    json: res.json,
  };
}

function wrongSecretFor(rawKey: string): string {
  const parsed = parseKey(rawKey);
  if (!parsed) throw new Error('soak: not a key');
  const secret = generateKey().rawKey.slice(-38, -6);
  return `rep_${parsed.lookup}${secret}${keyChecksum('rep', parsed.lookup, secret)}`;
}

const pick = <T>(items: readonly T[], n: number): T => items[n % items.length] as T;

const invalid = { status: 401, code: 'invalid_api_key' };
const renamed = [{ status: 200 }, { status: 429, code: 'rate_limited' }] as const;

/** The mix. Weights are per iteration of a connection's loop, not per request: the
 * lifecycle sends five requests in one iteration. */
export const actions: readonly Action[] = [
  {
    label: 'valid key',
    weight: 60,
    run: async (c, a, n) => [
      (await expect(c, 'valid key', { status: 200 }, 'GET', '/v1/hello', key(pick(a.valid, n))))
        .outcome,
    ],
  },
  {
    label: 'malformed key',
    weight: 8,
    run: async (c) => [
      (await expect(c, 'malformed key', invalid, 'GET', '/v1/hello', key('rep_not-a-real-key')))
        .outcome,
    ],
  },
  {
    label: 'unknown key',
    weight: 8,
    run: async (c) => [
      (await expect(c, 'unknown key', invalid, 'GET', '/v1/hello', key(generateKey().rawKey)))
        .outcome,
    ],
  },
  {
    label: 'wrong secret',
    weight: 3,
    run: async (c, a, n) => [
      (
        await expect(
          c,
          'wrong secret',
          invalid,
          'GET',
          '/v1/hello',
          key(wrongSecretFor(pick(a.victims, n))),
        )
      ).outcome,
    ],
  },
  {
    label: 'no key',
    weight: 4,
    run: async (c) => [
      (await expect(c, 'no key', { status: 401, code: 'missing_api_key' }, 'GET', '/v1/hello'))
        .outcome,
    ],
  },
  {
    label: 'list',
    weight: 6,
    run: async (c, a, n) => [
      (await expect(c, 'list', { status: 200 }, 'GET', '/v1/api-keys', key(pick(a.valid, n))))
        .outcome,
    ],
  },
  {
    label: 'lifecycle',
    weight: 3,
    async run(c, a, n) {
      const owner = key(pick(a.valid, n));
      const created = await expect(
        c,
        'create',
        { status: 201 },
        'POST',
        '/v1/api-keys',
        { ...owner, ...json },
        JSON.stringify({ name: `soak ${n}` }),
      );
      const data = (created.json as { data?: { id: string; rawKey: string } }).data;
      if (!data) return [created.outcome];
      const path = `/v1/api-keys/${data.id}`;
      const outcomes = [created.outcome];
      // A key never seen before: one store read and one argon2 verification.
      outcomes.push(
        (await expect(c, 'new key', { status: 200 }, 'GET', '/v1/hello', key(data.rawKey))).outcome,
      );
      outcomes.push(
        (
          await expect(
            c,
            'rename',
            // Renames are bounded per account and minute (maxRenamesPerMinute, 60 in the
            // examples); the soak's accounts rename far more often, so 429 is an answer too.
            renamed,
            'PATCH',
            path,
            { ...owner, ...json },
            JSON.stringify({ name: `soak ${n} renamed` }),
          )
        ).outcome,
      );
      outcomes.push((await expect(c, 'revoke', { status: 200 }, 'DELETE', path, owner)).outcome);
      outcomes.push(
        (await expect(c, 'revoked key', invalid, 'GET', '/v1/hello', key(data.rawKey))).outcome,
      );
      return outcomes;
    },
  },
  {
    label: 'create (cap reached)',
    weight: 2,
    run: async (c, a) => [
      (
        await expect(
          c,
          'create (cap reached)',
          { status: 409, code: 'key_limit_reached' },
          'POST',
          '/v1/api-keys',
          { ...key(a.full), ...json },
          '{"name":"one too many"}',
        )
      ).outcome,
    ],
  },
  {
    label: 'create (bad JSON)',
    weight: 2,
    run: async (c, a, n) => [
      (
        await expect(
          c,
          'create (bad JSON)',
          { status: 400, code: 'invalid_json' },
          'POST',
          '/v1/api-keys',
          { ...key(pick(a.valid, n)), ...json },
          '{"name": ',
        )
      ).outcome,
    ],
  },
  {
    label: 'revoke (unknown id)',
    weight: 2,
    run: async (c, a, n) => [
      (
        await expect(
          c,
          'revoke (unknown id)',
          { status: 404, code: 'not_found' },
          'DELETE',
          '/v1/api-keys/key_doesNotExist0000',
          key(pick(a.valid, n)),
        )
      ).outcome,
    ],
  },
];

const totalWeight = actions.reduce((sum, a) => sum + a.weight, 0);

/** The action for a random draw in [0, 1). */
export function drawAction(random: number): Action {
  let left = random * totalWeight;
  for (const action of actions) {
    left -= action.weight;
    if (left < 0) return action;
  }
  return actions[0] as Action;
}
