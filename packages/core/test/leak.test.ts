import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { memoryBus } from '../src/bus.js';
import { createHttpHandler, type HttpHandler, type HttpRequest } from '../src/http.js';
import { generateKey } from '../src/key-format.js';
import type { LeakEvent } from '../src/leak.js';
import { memoryStore } from '../src/memory-store.js';
import type { createKeyService } from '../src/service.js';
import { service, wrongSecretFor } from './test-fixtures.js';

/** A P-256 key pair standing in for GitHub's, and the public-key document GitHub serves. */
function signer(identifier = 'kw-test-key-1') {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    identifier,
    privateKey,
    document: {
      public_keys: [
        {
          key_identifier: identifier,
          key: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
          is_current: true,
        },
      ],
    },
  };
}

const GITHUB = signer();
const MOUNT = '/v1/api-keys';

function signature(body: string | Buffer, key: KeyObject = GITHUB.privateKey): string {
  return sign('sha256', Buffer.from(body), key).toString('base64');
}

function request(
  path: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
  method = 'POST',
  clientAddress?: string,
): HttpRequest {
  const bytes = Buffer.from(body);
  return {
    method,
    path,
    headers: {
      'content-type': 'application/json',
      'content-length': String(bytes.length),
      ...headers,
    },
    body: (async function* () {
      yield bytes;
    })(),
    ...(clientAddress === undefined ? {} : { clientAddress }),
  };
}

/** A signed alert request, as GitHub sends one. */
function alert(matches: { token: string; type?: string; url?: string }[], sign = true) {
  const body = JSON.stringify(
    matches.map(
      ({ token, type = 'keyward_api_key', url = 'https://github.com/o/r/blob/x/a.env' }) => ({
        token,
        type,
        url,
        source: 'content',
      }),
    ),
  );
  const headers: Record<string, string> = sign
    ? {
        'github-public-key-identifier': GITHUB.identifier,
        'github-public-key-signature': signature(body),
      }
    : {};
  return request(`${MOUNT}/leaks/github`, body, headers);
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Two instances of a host app: one store, one bus, a handler each, leak routes on. */
function twoInstances(
  leaks: Parameters<typeof createKeyService>[0]['leaks'] = {},
  now?: () => Date,
) {
  const store = memoryStore();
  const bus = memoryBus();
  const events: LeakEvent[] = [];
  const make = () => {
    const keys = service({
      store,
      bus,
      ...(now ? { now } : {}),
      leaks: { ...leaks, onLeak: (event) => void events.push(event) },
    });
    const http = createHttpHandler(keys, {
      leaks: { github: { publicKeys: GITHUB.document }, reportRoute: true },
    });
    return { keys, http };
  };
  return { store, events, a: make(), b: make() };
}

async function json(http: HttpHandler, req: HttpRequest) {
  const response = await http.handle(req);
  return { ...response, json: JSON.parse(response.body) as unknown };
}

describe('leak response: the GitHub alert route', () => {
  it('a signed alert for a real key quarantines it on every instance and reports a true positive', async () => {
    const { a, b, events, store } = twoInstances();
    const created = await a.keys.create('acct_1', 'prod');
    // Both instances hold the key in their caches before the alert.
    expect((await a.keys.verify(created.rawKey)).ok).toBe(true);
    expect((await b.keys.verify(created.rawKey)).ok).toBe(true);
    const before = Date.now();

    const answer = await json(a.http, alert([{ token: created.rawKey }]));
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual([
      { token_hash: sha256(created.rawKey), token_type: 'keyward_api_key', label: 'true_positive' },
    ]);
    expect(answer.body).not.toContain(created.rawKey);

    const [record] = store.snapshot();
    expect(record?.leakSource).toBe('github');
    expect(record?.leakedAt?.getTime()).toBeGreaterThanOrEqual(before);
    const expiresAt = record?.expiresAt?.getTime() ?? 0;
    expect(expiresAt - (record?.leakedAt?.getTime() ?? 0)).toBe(3600_000);
    // Instance B dropped its cached copy on the bus event: it sees the mark and the expiry.
    const onB = await b.keys.verify(created.rawKey);
    expect(onB).toMatchObject({ ok: true, key: { leakSource: 'github' } });
    expect(onB.ok && onB.key.expiresAt?.getTime()).toBe(expiresAt);
    expect(onB.ok && onB.key.leakedAt).toEqual(record?.leakedAt);
    expect(events).toEqual([
      {
        keyId: created.id,
        ownerId: 'acct_1',
        url: 'https://github.com/o/r/blob/x/a.env',
        source: 'github',
        action: 'quarantine',
      },
    ]);
  });

  it('with policy revoke, a signed alert revokes the key and what it created, on every instance', async () => {
    const { a, b, events, store } = twoInstances({ policy: 'revoke' });
    const parent = await a.keys.create('acct_1', 'parent');
    const child = await a.keys.create('acct_1', 'child', { createdBy: parent.id });
    const other = await a.keys.create('acct_1', 'other');
    for (const k of [parent, child]) expect((await b.keys.verify(k.rawKey)).ok).toBe(true);

    const answer = await json(a.http, alert([{ token: parent.rawKey }]));
    expect(answer.json).toMatchObject([{ label: 'true_positive' }]);
    expect(store.snapshot().map((k) => k.id)).toEqual([other.id]);
    expect(await b.keys.verify(parent.rawKey)).toMatchObject({ ok: false });
    expect(await b.keys.verify(child.rawKey)).toMatchObject({ ok: false });
    expect(events).toMatchObject([{ keyId: parent.id, action: 'revoke' }]);
  });

  it('with policy notify, a signed alert changes nothing and calls onLeak', async () => {
    const { a, events, store } = twoInstances({ policy: 'notify' });
    const created = await a.keys.create('acct_1', 'prod');
    const before = store.snapshot();
    const answer = await json(a.http, alert([{ token: created.rawKey }]));
    expect(answer.json).toMatchObject([{ label: 'true_positive' }]);
    expect(store.snapshot()).toEqual(before);
    expect(events).toMatchObject([{ keyId: created.id, action: 'notify' }]);
  });

  it('an unknown lookup, a bad checksum and a wrong-secret forgery of a real lookup are false positives and change nothing', async () => {
    const { a, events, store } = twoInstances();
    const real = await a.keys.create('acct_1', 'prod');
    const unknown = generateKey().rawKey;
    const badChecksum = `${real.rawKey.slice(0, -1)}${real.rawKey.endsWith('A') ? 'B' : 'A'}`;
    const forged = wrongSecretFor(real.rawKey);
    const before = store.snapshot();

    const answer = await json(
      a.http,
      alert([{ token: unknown }, { token: badChecksum }, { token: forged }, { token: 'hello' }]),
    );
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual(
      [unknown, badChecksum, forged, 'hello'].map((token) => ({
        token_hash: sha256(token),
        token_type: 'keyward_api_key',
        label: 'false_positive',
      })),
    );
    for (const token of [unknown, badChecksum, forged]) expect(answer.body).not.toContain(token);
    expect(store.snapshot()).toEqual(before);
    expect(events).toEqual([]);
    expect((await a.keys.verify(real.rawKey)).ok).toBe(true);
  });

  it('unsigned, forged, wrong-identifier, tampered and oversized alerts are refused and change nothing', async () => {
    const { a, events, store } = twoInstances();
    const real = await a.keys.create('acct_1', 'prod');
    const before = store.snapshot();
    const body = JSON.stringify([{ token: real.rawKey, type: 't', url: 'u' }]);
    const impostor = signer(GITHUB.identifier);
    const cases: [string, HttpRequest, number][] = [
      ['unsigned', request(`${MOUNT}/leaks/github`, body), 401],
      [
        'identifier only',
        request(`${MOUNT}/leaks/github`, body, {
          'github-public-key-identifier': GITHUB.identifier,
        }),
        401,
      ],
      [
        'signed by another key under the same identifier',
        request(`${MOUNT}/leaks/github`, body, {
          'github-public-key-identifier': GITHUB.identifier,
          'github-public-key-signature': signature(body, impostor.privateKey),
        }),
        401,
      ],
      [
        'unknown identifier',
        request(`${MOUNT}/leaks/github`, body, {
          'github-public-key-identifier': 'another-key',
          'github-public-key-signature': signature(body),
        }),
        401,
      ],
      [
        'body changed after signing',
        request(`${MOUNT}/leaks/github`, body.replace('"t"', '"x"'), {
          'github-public-key-identifier': GITHUB.identifier,
          'github-public-key-signature': signature(body),
        }),
        401,
      ],
      [
        'garbage signature',
        request(`${MOUNT}/leaks/github`, body, {
          'github-public-key-identifier': GITHUB.identifier,
          'github-public-key-signature': '!!not base64!!',
        }),
        401,
      ],
      [
        'too many bytes (signed)',
        alert([{ token: real.rawKey, url: `https://x/${'a'.repeat(70_000)}` }]),
        413,
      ],
      [
        'too many matches (signed)',
        alert(Array.from({ length: 101 }, () => ({ token: real.rawKey }))),
        413,
      ],
    ];
    for (const [label, req, status] of cases) {
      const answer = await json(a.http, req);
      expect([label, answer.status]).toEqual([label, status]);
      expect(answer.json).toMatchObject({ success: false });
      expect(answer.headers['WWW-Authenticate']).toBeUndefined();
    }
    expect(store.snapshot()).toEqual(before);
    expect(events).toEqual([]);
  });

  it('the same alert twice is idempotent: one mark, one expiry, one onLeak, the same answer', async () => {
    const { a, b, events, store } = twoInstances();
    const real = await a.keys.create('acct_1', 'prod');
    const req = () => alert([{ token: real.rawKey }, { token: generateKey().rawKey }]);
    const first = await json(a.http, req());
    const after = store.snapshot();
    await sleep(5);
    // Again on the same instance, then on the other one (which has no memory of it).
    const again = await json(a.http, req());
    const elsewhere = await json(b.http, req());
    expect((again.json as unknown[])[0]).toEqual((first.json as unknown[])[0]);
    expect((elsewhere.json as unknown[])[0]).toEqual((first.json as unknown[])[0]);
    expect(store.snapshot()).toEqual(after);
    expect(events).toHaveLength(1);
  });

  it('with policy revoke, a repeated alert is still a true positive', async () => {
    const { a, events } = twoInstances({ policy: 'revoke' });
    const real = await a.keys.create('acct_1', 'prod');
    for (let i = 0; i < 2; i++) {
      expect((await json(a.http, alert([{ token: real.rawKey }]))).json).toMatchObject([
        { label: 'true_positive' },
      ]);
    }
    expect(events).toHaveLength(1);
  });

  it('a malformed signed body is 400, GET is 405, and the route is absent unless enabled', async () => {
    const { a } = twoInstances();
    const body = '{"not":"an array"}';
    const signed = request(`${MOUNT}/leaks/github`, body, {
      'github-public-key-identifier': GITHUB.identifier,
      'github-public-key-signature': signature(body),
    });
    expect((await a.http.handle(signed)).status).toBe(400);
    expect((await a.http.handle(request(`${MOUNT}/leaks/github`, '', {}, 'GET'))).status).toBe(405);
    const plain = createHttpHandler(service());
    expect((await plain.handle(alert([{ token: 'x' }]))).status).toBe(404);
    expect((await plain.handle(request(`${MOUNT}/report-leak`, '{"keys":[]}'))).status).toBe(405);
  });

  it('refuses public keys that are not P-256, and a grace over 24 hours', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    const document = {
      public_keys: [{ key_identifier: 'r', key: rsa.export({ type: 'spki', format: 'pem' }) }],
    };
    expect(() =>
      createHttpHandler(service(), { leaks: { github: { publicKeys: document as never } } }),
    ).toThrow(/P-256/);
    expect(() =>
      createHttpHandler(service(), { leaks: { github: { publicKeys: '{"public_keys":[]}' } } }),
    ).toThrow(/public_keys/);
    expect(() => service({ leaks: { quarantineGraceSeconds: 86_401 } })).toThrow(/24 hours/);
    expect(() => service({ leaks: { policy: 'delete' as never } })).toThrow(/policy/);
  });
});

describe('leak response: quarantine', () => {
  it('the key works until its shortened expiry, manages nothing from the alert on, and is listed with leakedAt', async () => {
    let clock = new Date('2026-12-01T12:00:00.000Z');
    const now = () => clock;
    const { a, b } = twoInstances({ quarantineGraceSeconds: 600 }, now);
    const leaked = await a.keys.create('acct_1', 'leaked');
    const other = await a.keys.create('acct_1', 'other');
    const manage = (rawKey: string, method = 'GET', path = MOUNT) =>
      a.http.handle({
        method,
        path,
        headers: { 'x-api-key': rawKey },
        body: (async function* () {})(),
      });
    expect((await manage(leaked.rawKey)).status).toBe(200);

    await a.http.handle(alert([{ token: leaked.rawKey }]));

    // Management: refused from the alert on, on both instances, whatever its scopes ('*').
    const refused = await manage(leaked.rawKey);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'insufficient_scope' } });
    expect((await manage(leaked.rawKey, 'DELETE', `${MOUNT}/${other.id}`)).status).toBe(403);
    // A host route that asks for a management scope refuses it too; one that does not, admits it.
    const verified = await a.keys.verify(leaked.rawKey);
    if (!verified.ok) throw new Error('the quarantined key should still verify');
    expect(a.http.checkScopes(verified.key, ['api_keys:write'])?.status).toBe(403);
    expect(a.http.checkScopes(verified.key, ['orders:write'])).toBeUndefined();
    // Listed (by another key of the account) with the mark, last in the key's fields.
    const listed = JSON.parse((await manage(other.rawKey)).body).data as Record<string, unknown>[];
    const entry = listed.find((k) => k.id === leaked.id);
    expect(entry).toMatchObject({
      leakedAt: '2026-12-01T12:00:00.000Z',
      leakSource: 'github',
      expiresAt: '2026-12-01T12:10:00.000Z',
    });
    expect(Object.keys(entry ?? {}).slice(-2)).toEqual(['leakedAt', 'leakSource']);
    expect(listed.find((k) => k.id === other.id)).toMatchObject({
      leakedAt: null,
      leakSource: null,
    });

    // Host routes: usable until the shortened expiry, on both instances; refused after.
    clock = new Date('2026-12-01T12:09:59.999Z');
    expect((await a.keys.verify(leaked.rawKey)).ok).toBe(true);
    expect((await b.keys.verify(leaked.rawKey)).ok).toBe(true);
    clock = new Date('2026-12-01T12:10:00.000Z');
    expect(await a.keys.verify(leaked.rawKey)).toEqual({ ok: false, reason: 'expired' });
    expect(await b.keys.verify(leaked.rawKey)).toEqual({ ok: false, reason: 'expired' });
    expect((await b.keys.verify(other.rawKey)).ok).toBe(true);
  });

  it('never extends a key: one expiring sooner than the grace keeps its expiry', async () => {
    const { a, store } = twoInstances();
    const soon = await a.keys.create('acct_1', 'soon', { expiresIn: 120 });
    await a.http.handle(alert([{ token: soon.rawKey }]));
    const [record] = store.snapshot();
    expect(record?.expiresAt).toEqual(soon.expiresAt);
    expect(record?.leakedAt).not.toBeNull();
  });

  it('req.apiKey carries leakedAt and leakSource', async () => {
    const { a } = twoInstances();
    const created = await a.keys.create('acct_1', 'prod');
    const fresh = await a.keys.verify(created.rawKey);
    expect(fresh).toMatchObject({ ok: true, key: { leakedAt: null, leakSource: null } });
    await a.keys.reportLeak(created.rawKey, { source: 'pastebin-watch' });
    const marked = await a.keys.verify(created.rawKey);
    expect(marked).toMatchObject({ ok: true, key: { leakSource: 'pastebin-watch' } });
    expect(marked.ok && marked.key.leakedAt).toBeInstanceOf(Date);
  });
});

describe('leak response: the public report route', () => {
  const report = (http: HttpHandler, keys: unknown[], clientAddress = '192.0.2.1') =>
    http.handle(
      request(`${MOUNT}/report-leak`, JSON.stringify({ keys }), {}, 'POST', clientAddress),
    );

  async function settled(check: () => boolean) {
    for (let i = 0; i < 200 && !check(); i++) await sleep(10);
    return check();
  }

  it('answers the same bytes for a real key, a forged one and garbage, and acts on the real key only', async () => {
    const { a, store, events } = twoInstances();
    const real = await a.keys.create('acct_1', 'prod');
    const other = await a.keys.create('acct_2', 'prod');
    const answers = [
      await report(a.http, [real.rawKey], '192.0.2.1'),
      await report(a.http, [wrongSecretFor(other.rawKey)], '192.0.2.2'),
      await report(a.http, [generateKey().rawKey], '192.0.2.3'),
      await report(a.http, ['not a key at all'], '192.0.2.4'),
    ];
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(answers[0]?.status).toBe(202);
    expect(JSON.parse(answers[0]?.body ?? '')).toEqual({ success: true, data: { received: 1 } });

    const marked = () => store.snapshot().find((k) => k.id === real.id)?.leakedAt != null;
    expect(await settled(marked)).toBe(true);
    expect(store.snapshot().find((k) => k.id === other.id)).toMatchObject({ leakedAt: null });
    expect(events).toMatchObject([{ keyId: real.id, source: 'report', url: null }]);
  });

  it('takes at most 100 strings, and rate-limits each client address on its own', async () => {
    const { a } = twoInstances();
    expect((await report(a.http, Array(101).fill('k'), '198.51.100.1')).status).toBe(400);
    expect((await report(a.http, [42], '198.51.100.2')).status).toBe(400);
    const ten = await Promise.all(
      Array.from({ length: 10 }, () => report(a.http, ['k'], '198.51.100.3')),
    );
    expect(ten.map((r) => r.status)).toEqual(Array(10).fill(202));
    const over = await report(a.http, ['k'], '198.51.100.3');
    expect(over.status).toBe(429);
    expect(Number(over.headers['Retry-After'])).toBeGreaterThan(0);
    // Another address is not affected.
    expect((await report(a.http, ['k'], '198.51.100.4')).status).toBe(202);
  });
});
