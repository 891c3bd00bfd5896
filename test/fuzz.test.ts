/**
 * Property-based fuzzing of the management API over real HTTP, on both adapters: random
 * methods, paths (rolls included), ids, cascade flags, key headers (keys with every scope,
 * with fewer, expired), content types and bodies with and without the lifecycle fields
 * (test/support/hostile-requests.ts), sent 20 at a time, each answer checked against the
 * rules, and the store compared before and after every batch: only the requests that
 * succeeded may have changed it.
 *
 * Seeded and reproducible: KEYWARD_FUZZ_SEED=<n> replays a run, KEYWARD_FUZZ_RUNS=<n> sets
 * the number of batches (default 250, i.e. 5,000 requests per adapter).
 */
import { Agent, request as httpRequest } from 'node:http';
import {
  createKeyService,
  type ErrorCode,
  errorCodes,
  type KeyService,
  type MemoryStore,
  memoryStore,
  type StoredKey,
} from '@keyward/core';
import { CHEAP_ARGON2, CREATE_FIELDS, KEY_FIELDS, type RunningServer } from '@keyward/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BatchFacts,
  type Classified,
  classify,
  type Expectation,
  expectationFor,
  hostileRequest,
  type KeyFacts,
  type KnownKey,
  PRESENTER_SCOPES,
  type Presenter,
  SCOPED,
  SCOPED_NAMES,
  type ScopedName,
  statusOf,
  TARGET_COUNT,
  toWire,
  type WireRequest,
  type World,
} from './support/hostile-requests.js';
import { rawRequest } from './support/raw-http.js';
import { startServer } from './support/servers.js';

const SEED = Number(process.env.KEYWARD_FUZZ_SEED ?? 0x6b657977);
const RUNS = Number(process.env.KEYWARD_FUZZ_RUNS ?? 250);
const BATCH = 20;
/** Ten keys are kept alive (the main key, three scoped ones, an expired one, five
 * targets): room for four more. */
const CAP = 14;
/** A key that expires this soon is taken out between batches: no key expires while a
 * batch runs, unless a roll of the batch expires it at once. */
const EXPIRY_MARGIN_MS = 60_000;
const GUARDED_PATH = '/test/protected';
const JSON_TYPE = 'application/json; charset=utf-8';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Content-Length as sent, checked against the body on raw connections. */
  framedLength?: number;
}

describe.each(['express', 'fastify', 'hono'] as const)('%s: hostile requests (fuzz)', (adapter) => {
  let store: MemoryStore;
  let service: KeyService;
  let server: RunningServer;
  let world: World;
  let agent: Agent;
  const reported: unknown[] = [];
  const tally = new Map<string, number>();
  /** The lifecycle answers seen, by kind: the generators must reach each one. */
  const features = new Map<string, number>();
  let batchesAtCap = 0;

  beforeAll(async () => {
    console.info(
      `fuzz (${adapter}): seed ${SEED}, ${RUNS} batches of ${BATCH}; replay with KEYWARD_FUZZ_SEED=${SEED}`,
    );
    store = memoryStore();
    service = createKeyService({
      store,
      maxKeysPerOwner: CAP,
      // Updates are rate-limited per account; the fuzz sends thousands in a few seconds and
      // models no 429.
      maxRenamesPerMinute: 1_000_000_000,
      // Cheap hashes: the fuzz is about the HTTP layer, not argon2's cost.
      // 64 KiB: thousands of keys are hashed and checked here.
      argon2: { ...CHEAP_ARGON2, memoryCost: 64 },
      // Written on demand, before each snapshot, so a batch's uses are all in it.
      lastUsedFlushIntervalMs: 3_600_000,
      onError: (error) => reported.push(error),
    });
    server = await startServer[adapter]({ service, guardedPath: GUARDED_PATH });
    agent = new Agent({ keepAlive: true, maxSockets: BATCH });
    const ownerId = `fuzz-${adapter}`;
    const make = async (owner = ownerId): Promise<KnownKey> => {
      const { id, rawKey } = await service.create(owner, 'fixture');
      return { id, rawKey };
    };
    const revoked = await make();
    await service.revoke(ownerId, revoked.id);
    world = {
      ownerId,
      main: await make(),
      scoped: await makeScoped(),
      expired: await makeExpired(),
      targets: await Promise.all(Array.from({ length: TARGET_COUNT }, () => make())),
      foreign: await make(`fuzz-${adapter}-other`),
      revoked,
    };
  });

  async function makeScoped(): Promise<Record<ScopedName, KnownKey>> {
    const entries = await Promise.all(
      SCOPED_NAMES.map(async (name) => {
        const { id, rawKey } = await service.create(world?.ownerId ?? `fuzz-${adapter}`, name, {
          scopes: [...SCOPED[name]],
        });
        return [name, { id, rawKey }] as const;
      }),
    );
    return Object.fromEntries(entries) as Record<ScopedName, KnownKey>;
  }

  /** A key expired at once by a roll with no grace; the key the roll made is revoked. */
  async function makeExpired(): Promise<KnownKey> {
    const ownerId = world?.ownerId ?? `fuzz-${adapter}`;
    const { id, rawKey } = await service.create(ownerId, 'expired');
    const rolled = await service.roll(ownerId, id, { expiresIn: 0 });
    if (rolled) await service.revoke(ownerId, rolled.id);
    return { id, rawKey };
  }

  afterAll(async () => {
    agent?.destroy();
    await server?.close();
    await service?.close();
  });

  it(`${RUNS * BATCH} requests: the answers the rules give, no 5xx, no change from a rejected request`, async () => {
    const origin = server.url;
    const prototypeBefore = Object.getOwnPropertyNames(Object.prototype).sort();

    const run = await fc.check(
      fc.asyncProperty(
        fc.array(hostileRequest, { minLength: BATCH, maxLength: BATCH }),
        async (batch) => {
          await service.flushLastUsed();
          const before = byId(store.snapshot());
          const now = Date.now();
          const wires = batch.map((req) => toWire(req, world, origin, now));
          const classified = batch.map((req, i) =>
            classify(req, wires[i] as WireRequest, world, now),
          );
          const facts: BatchFacts = {
            keys: new Map(
              [...before.values()]
                .filter((k) => k.ownerId === world.ownerId)
                .map((k): [string, KeyFacts] => [
                  k.id,
                  {
                    name: k.name,
                    expiresAt: k.expiresAt?.getTime() ?? null,
                    scopes: k.scopes,
                    metadata: k.metadata,
                    createdBy: k.createdBy,
                  },
                ]),
            ),
            presenterIds: presenterIds(world),
            cap: CAP,
            now,
            batch: classified,
          };
          const answers = await Promise.all(wires.map(sendOrExplain));
          const window = { from: now, to: Date.now() };
          const outcomes = answers.map((answer, i) => {
            const c = classified[i] as Classified;
            const outcome =
              adapter === 'hono' && refusedByNodeServer(c.wire)
                ? checkBridgeRefusal(c, answer)
                : checkAnswer(c, expectationFor(c, facts), answer, world, { facts, window });
            tally.set(outcome, (tally.get(outcome) ?? 0) + 1);
            const feature = featureOf(c, answer);
            if (feature) features.set(feature, (features.get(feature) ?? 0) + 1);
            return { c, answer };
          });

          await service.flushLastUsed();
          checkStore(before, byId(store.snapshot()), outcomes, world, facts, window);
          expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeBefore);
          expect(({} as { name?: unknown }).name).toBeUndefined();
          expect(reported).toEqual([]);

          await keepWorldAlive();
          // Over the kept-alive connections the batch used: one a request left in a bad
          // state (a body half read, say) would hang here.
          const health = await sendOrExplain(guardedGet(world.main.rawKey));
          expect(health.status, 'the guarded route still answers after the batch').toBe(200);
        },
      ),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    // The batch fast-check would print is 20 requests long; the cause names the one that
    // failed, and the seed and path replay it.
    if (run.failed) {
      const cause =
        run.errorInstance instanceof Error ? run.errorInstance.message : String(run.errorInstance);
      throw new Error(
        `fuzz failed at batch ${run.numRuns} (KEYWARD_FUZZ_SEED=${run.seed}, path ${run.counterexamplePath}):\n${cause}`,
      );
    }

    // A generator that drifted into answering 401 to everything would pass the checks above
    // and test nothing: every answer of the table but the store failures must show up.
    const seen = new Set([...tally.keys()]);
    const wanted = [
      '200',
      '201',
      '400 invalid_json',
      '400 invalid_request',
      '401 missing_api_key',
      '401 invalid_api_key',
      '404 not_found',
      '405 method_not_allowed',
      '403 insufficient_scope',
      '409 key_limit_reached',
      '413 payload_too_large',
      '415 unsupported_media_type',
    ];
    const wantedFeatures = [
      'create with lifecycle fields 201',
      'create refused a scope 403',
      'route scope 403',
      'roll 201',
      'roll 404',
      'roll 409',
      'patch expiresAt 200',
      'patch later expiresAt 400',
      'cascade 200',
      'cascade flag 400',
    ];
    console.info(
      `fuzz (${adapter}) answers: ${[...tally]
        .sort()
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ')}`,
    );
    console.info(
      `fuzz (${adapter}) lifecycle: ${[...features]
        .sort()
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ')}`,
    );
    expect(wanted.filter((w) => !seen.has(w))).toEqual([]);
    expect(wantedFeatures.filter((w) => !features.has(w))).toEqual([]);
  }, 120_000);

  function sendOrExplain(wire: WireRequest): Promise<Answer> {
    return send(wire).catch((error: unknown) => {
      throw new Error(`${String(error)}\n  request: ${describeWire(wire)}`);
    });
  }

  async function send(wire: WireRequest): Promise<Answer> {
    if (wire.raw) {
      const res = await rawRequest(server.url, {
        method: wire.method,
        target: wire.target,
        headers: wire.headers,
        ...(wire.body === undefined ? {} : { body: wire.body }),
        ...(wire.chunkSize === null ? {} : { chunkSize: wire.chunkSize }),
      });
      const length = res.headers['content-length'];
      return {
        status: res.status,
        headers: res.headers,
        body: res.body,
        ...(length === undefined ? {} : { framedLength: Number(length) }),
      };
    }
    const url = new URL(server.url);
    const headers: Record<string, string[]> = {};
    for (const [name, value] of wire.headers) {
      headers[name] = [...(headers[name] ?? []), value.toString('latin1')];
    }
    if (wire.body !== undefined) {
      if (wire.chunkSize === null) headers['Content-Length'] = [String(wire.body.byteLength)];
      else headers['Transfer-Encoding'] = ['chunked'];
    }
    return new Promise<Answer>((resolve, reject) => {
      const req = httpRequest(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method: wire.method,
          path: wire.target,
          headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks),
            }),
          );
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', reject);
      const body = wire.body;
      if (body !== undefined && wire.chunkSize !== null) {
        for (let at = 0; at < body.byteLength; at += wire.chunkSize) {
          req.write(body.subarray(at, at + wire.chunkSize));
        }
        req.end();
      } else {
        req.end(body);
      }
    });
  }

  /** Puts back the keys a batch revoked, expired or brought close to expiring (a key that
   * expires within a minute goes now, so none expires while a batch runs), and makes
   * room under the cap, so the next batch finds the same kinds of keys. */
  async function keepWorldAlive(): Promise<void> {
    const soon = Date.now() + EXPIRY_MARGIN_MS;
    const listed = await service.list(world.ownerId);
    const live = new Set(listed.map((k) => k.id));
    // A key the batch revoked, or rolled with no grace, is refused from then on: cached
    // or not, on the guard's warm path too.
    const expiredNow = new Set(
      listed.filter((k) => k.expiresAt !== null && k.expiresAt <= new Date()).map((k) => k.id),
    );
    for (const key of [world.main, ...Object.values(world.scoped)]) {
      if (live.has(key.id) && !expiredNow.has(key.id)) continue;
      const res = await sendOrExplain(guardedGet(key.rawKey));
      expect(res.status, 'a key revoked or expired by the batch is refused').toBe(401);
    }
    const drop = async (id: string) => {
      await service.revoke(world.ownerId, id);
      live.delete(id);
    };
    for (const k of listed) {
      if (k.id !== world.expired.id && k.expiresAt !== null && k.expiresAt.getTime() <= soon) {
        await drop(k.id);
      }
    }
    const kept = [world.main, world.expired, ...Object.values(world.scoped), ...world.targets];
    const keptIds = new Set(kept.map((k) => k.id));
    // Some batches run at the cap, so creates and rolls meet their 409; then room is made
    // again, and always for the keys to put back (the expired one takes two at once).
    const missing = kept.filter((k) => !live.has(k.id)).length;
    batchesAtCap = live.size >= CAP ? batchesAtCap + 1 : 0;
    if (batchesAtCap > 4 || live.size + missing + 1 > CAP) {
      batchesAtCap = 0;
      for (const id of [...live]) if (!keptIds.has(id)) await drop(id);
    }
    const replace = async (key: KnownKey, scopes?: readonly string[]): Promise<KnownKey> => {
      if (live.has(key.id)) return key;
      const { id, rawKey } = await service.create(world.ownerId, 'fixture', {
        ...(scopes ? { scopes: [...scopes] } : {}),
      });
      live.add(id);
      return { id, rawKey };
    };
    world.main = await replace(world.main);
    for (const name of SCOPED_NAMES) {
      world.scoped[name] = await replace(world.scoped[name], SCOPED[name]);
    }
    world.targets = await Promise.all(world.targets.map((t) => replace(t)));
    if (!live.has(world.expired.id)) world.expired = await makeExpired();
  }
});

/**
 * @hono/node-server refuses a raw backslash in the path (before any `?`) with a bare 400,
 * before any app code runs (WHATWG URL parsing would read it as a `/`). Nothing reaches
 * keyward, so nothing can change; the store check still holds it to that.
 */
function refusedByNodeServer(wire: WireRequest): boolean {
  const backslash = wire.target.indexOf('\\');
  const query = wire.target.indexOf('?');
  return backslash !== -1 && (query === -1 || backslash < query);
}

function checkBridgeRefusal(c: Classified, answer: Answer): string {
  // Empty, but framed chunked: on a raw connection, the body read is the framing itself.
  if (answer.status !== 400 || answer.headers['content-type'] !== undefined) {
    throw new Error(
      `@hono/node-server should have refused a backslash in the path with a bare 400 (no body)\n  request: ${describeWire(c.wire)}\n  got: ${answer.status} ${answer.body.toString('utf8').slice(0, 300)}`,
    );
  }
  return '400 (node-server: backslash)';
}

function presenterIds(world: World): Record<Presenter, string> {
  return {
    main: world.main.id,
    ...(Object.fromEntries(SCOPED_NAMES.map((n) => [n, world.scoped[n].id])) as Record<
      ScopedName,
      string
    >),
  };
}

/** When the batch was sent and when its last answer came. */
interface Window {
  from: number;
  to: number;
}

interface CheckContext {
  facts: BatchFacts;
  window: Window;
}

const LIFECYCLE_FIELDS = ['expiresAt', 'expiresIn', 'scopes', 'metadata'] as const;

/** Which lifecycle answer this is, for the tally the generators must fill. */
function featureOf(c: Classified, answer: Answer): string | undefined {
  const shape = c.route?.shape;
  const writer =
    c.key !== 'missing' &&
    c.key !== 'invalid' &&
    PRESENTER_SCOPES[c.key].some((s) => s === '*' || s === 'api_keys:write');
  if (answer.status === 403 && c.body !== null && writer && shape === 'collection') {
    return 'create refused a scope 403';
  }
  if (answer.status === 403 && shape !== 'roll') return 'route scope 403';
  if (shape === 'roll') return `roll ${answer.status}`;
  if (shape === 'collection' && c.method === 'POST' && answer.status === 201) {
    const fields = c.fields ?? {};
    if (
      LIFECYCLE_FIELDS.some((f) => f !== 'expiresIn' && fields[f] !== undefined) ||
      fields.expiresIn !== undefined
    ) {
      return 'create with lifecycle fields 201';
    }
  }
  if (shape === 'item' && c.method === 'PATCH' && c.fields?.expiresAt !== undefined) {
    if (answer.status === 200) return 'patch expiresAt 200';
    if (answer.status === 400) return 'patch later expiresAt 400';
  }
  if (shape === 'item' && c.method === 'DELETE') {
    if (c.cascade === true && answer.status === 200) return 'cascade 200';
    if (c.cascade === 'invalid' && answer.status === 400) return 'cascade flag 400';
  }
  return undefined;
}

function byId(keys: StoredKey[]): Map<string, StoredKey> {
  return new Map(keys.map((k) => [k.id, k]));
}

const WWW_AUTHENTICATE = 'ApiKey header="X-API-Key"';

/** Checks one answer; returns `<status> <code>` for the tally. */
function checkAnswer(
  c: Classified,
  expected: Expectation,
  answer: Answer,
  world: World,
  ctx: CheckContext,
): string {
  const fail = (why: string): never => {
    throw new Error(
      `${why}\n  request: ${describeWire(c.wire)}\n  expected: ${JSON.stringify(expected)}\n  got: ${answer.status} ${JSON.stringify(answer.headers)}\n  ${
        answer.status >= 300
          ? answer.body.toString('utf8').slice(0, 300)
          : '(success body not shown)'
      }`,
    );
  };
  const head = c.method === 'HEAD';
  if (answer.status >= 500) fail('5xx while the store is up');
  if (answer.headers['content-type'] !== JSON_TYPE) fail('not application/json; charset=utf-8');
  if (answer.headers['cache-control'] !== 'no-store') fail('no Cache-Control: no-store');
  if (answer.headers['x-content-type-options'] !== 'nosniff') fail('no X-Content-Type-Options');
  if (
    answer.framedLength !== undefined &&
    !head &&
    answer.framedLength !== answer.body.byteLength
  ) {
    fail('Content-Length does not match the body');
  }
  if (head && answer.body.byteLength > 0) fail('HEAD answered with a body');

  if (answer.status < 300) {
    if (!expected.successes.includes(answer.status)) fail('unexpected success');
    if (!head) checkSuccessBody(c, answer, fail, ctx);
    return String(answer.status);
  }

  const wwwAuthenticate = answer.headers['www-authenticate'];
  const scopeRefusal = answer.status === 403 && expected.scope !== undefined;
  if (answer.status === 401) {
    if (wwwAuthenticate !== WWW_AUTHENTICATE) fail('a 401 without its WWW-Authenticate');
  } else if (scopeRefusal) {
    const wanted = `${WWW_AUTHENTICATE}, error="insufficient_scope", scope="${expected.scope}"`;
    if (wwwAuthenticate !== wanted) fail(`a scope refusal without ${wanted}`);
  } else if (answer.status === 403) {
    // A scope the key may not grant: the key lacks nothing the route needs. No header is
    // required; one that is sent names the error.
    if (
      wwwAuthenticate !== undefined &&
      !String(wwwAuthenticate).startsWith(`${WWW_AUTHENTICATE}, error="insufficient_scope"`)
    ) {
      fail('odd WWW-Authenticate on a 403');
    }
  } else if (wwwAuthenticate !== undefined) {
    fail('WWW-Authenticate on neither a 401 nor a 403');
  }
  if (answer.status === 405 && answer.headers.allow !== expected.allow) fail('wrong Allow');
  if (answer.headers['retry-after'] !== undefined) fail('Retry-After without a 503');
  if (head) {
    if (!expected.codes.some((code) => statusOf(code) === answer.status)) fail('unexpected status');
    return `${answer.status} (HEAD)`;
  }

  const text = answer.body.toString('utf8');
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    fail('error body is not JSON');
  }
  const { success, error, ...extra } = envelope as { success: unknown; error: unknown };
  const { code, message, ...extraError } = (error ?? {}) as { code: unknown; message: unknown };
  if (
    success !== false ||
    Object.keys(extra).length > 0 ||
    Object.keys(extraError).length > 0 ||
    typeof message !== 'string' ||
    message === '' ||
    typeof code !== 'string' ||
    !Object.hasOwn(errorCodes, code)
  ) {
    fail('not the error envelope');
  }
  const known = code as ErrorCode;
  if (errorCodes[known].status !== answer.status) fail('status does not match the code');
  if (!expected.codes.includes(known)) fail(`unexpected ${known}`);
  const ownMessage =
    known === 'invalid_request' || (known === 'insufficient_scope' && !scopeRefusal);
  if (!ownMessage && message !== errorCodes[known].message) fail('odd message');
  for (const key of allKeys(world)) if (text.includes(key)) fail('a raw key in an error body');
  return `${answer.status} ${known}`;
}

const LIST_FIELDS = KEY_FIELDS;
/** A plain GET of the guarded route with `rawKey`, on the fuzz's wire. */
function guardedGet(rawKey: string): WireRequest {
  return {
    method: 'GET',
    target: GUARDED_PATH,
    headers: [['X-API-Key', Buffer.from(rawKey)]],
    body: undefined,
    chunkSize: null,
    raw: false,
    segments: [],
    keyValues: [],
    jsonContentType: false,
  };
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

type KeyJson = Record<string, unknown>;

function checkSuccessBody(
  c: Classified,
  answer: Answer,
  fail: (why: string) => never,
  { facts, window }: CheckContext,
): void {
  const text = answer.body.toString('utf8');
  const body = JSON.parse(text) as { success: boolean; data?: unknown; revoked?: unknown };
  if (body.success !== true) fail('success without success: true');
  const fields = (value: unknown) => Object.keys(value as object).join();
  const route = c.route;
  const presenter = c.key as Presenter;
  const iso = (ms: number | null | undefined) =>
    ms === null || ms === undefined ? null : new Date(ms).toISOString();

  /** The shape of a key in any answer: fields in order, each of its type. */
  const checkKey = (key: KeyJson, created: boolean, what: string) => {
    if (fields(key) !== (created ? CREATE_FIELDS : LIST_FIELDS).join()) fail(`${what}: shape`);
    const ok =
      typeof key.id === 'string' &&
      typeof key.name === 'string' &&
      typeof key.keyPrefix === 'string' &&
      typeof key.keySuffix === 'string' &&
      (key.lastUsedAt === null ||
        (typeof key.lastUsedAt === 'string' && ISO.test(key.lastUsedAt))) &&
      typeof key.createdAt === 'string' &&
      ISO.test(key.createdAt) &&
      (key.expiresAt === null || (typeof key.expiresAt === 'string' && ISO.test(key.expiresAt))) &&
      Array.isArray(key.scopes) &&
      key.scopes.length > 0 &&
      key.scopes.every((s) => typeof s === 'string') &&
      typeof key.metadata === 'object' &&
      key.metadata !== null &&
      !Array.isArray(key.metadata) &&
      (key.createdBy === null || typeof key.createdBy === 'string') &&
      (!created || (typeof key.rawKey === 'string' && key.rawKey.startsWith('rep_')));
    if (!ok) fail(`${what}: a field of the wrong type`);
  };
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  /** Values a PATCH of the batch may have given the key meanwhile. */
  const patched = (id: string, field: 'name' | 'metadata' | 'expiresAt') =>
    facts.batch
      .filter((o) => o.method === 'PATCH' && o.route?.shape === 'item' && o.route.id === id)
      .map((o) => o.fields?.[field])
      .filter((v) => v !== undefined);

  if (c.method === 'DELETE' && route?.shape === 'item') {
    if (c.cascade !== true) {
      if (text !== '{"success":true}') fail('DELETE answer is not {"success":true}');
      return;
    }
    const revoked = body.revoked;
    if (fields(body) !== 'success,revoked' || !Array.isArray(revoked)) {
      fail('cascade answer is not {"success":true,"revoked":[…]}');
    }
    const ids = revoked as unknown[];
    if (ids[0] !== route.id) fail('cascade answer does not name the revoked key first');
    if (!ids.every((id) => typeof id === 'string') || new Set(ids).size !== ids.length) {
      fail('cascade answer: ids not unique strings');
    }
    return;
  }
  if (fields(body) !== 'success,data') fail('not {"success":true,"data":…}');
  if (c.method === 'GET') {
    if (!Array.isArray(body.data)) fail('list data is not an array');
    const listed = body.data as KeyJson[];
    for (const key of listed) checkKey(key, false, 'list item');
    // The account's keys, expired ones included, as the store holds them: a key the batch
    // may have changed or removed is let be, a key the batch may have made may show up.
    const touched = (id: string) =>
      facts.batch.some(
        (o) =>
          o.key !== 'missing' &&
          o.key !== 'invalid' &&
          (o.route?.shape === 'item' || o.route?.shape === 'roll') &&
          (o.route.id === id || (o.method === 'DELETE' && o.cascade === true)),
      );
    const adds = facts.batch.some(
      (o) => o.method === 'POST' && o.route?.shape !== undefined && o.route.shape !== 'item',
    );
    const ids = new Set(listed.map((k) => k.id as string));
    for (const [id, key] of facts.keys) {
      if (touched(id)) continue;
      if (!ids.has(id)) fail(`list: ${id} missing`);
      const item = listed.find((k) => k.id === id) as KeyJson;
      const stored = {
        name: key.name,
        expiresAt: iso(key.expiresAt),
        scopes: key.scopes,
        metadata: key.metadata,
        createdBy: key.createdBy,
      };
      const shown = {
        name: item.name,
        expiresAt: item.expiresAt,
        scopes: item.scopes,
        metadata: item.metadata,
        createdBy: item.createdBy,
      };
      if (!same(shown, stored)) fail(`list: ${id} is not as stored`);
    }
    for (const id of ids)
      if (!facts.keys.has(id) && !adds) fail(`list: ${id} is not the account's`);
    return;
  }
  const data = body.data as KeyJson;
  const want = (ok: boolean, why: string) => {
    if (!ok) fail(why);
  };
  if (route?.shape === 'collection') {
    checkKey(data, true, 'created key');
    const f = c.fields ?? {};
    want(data.name === f.name, 'created key: name is not the name sent, trimmed');
    want(data.lastUsedAt === null, 'created key: lastUsedAt');
    want(
      same(data.scopes, f.scopes ?? PRESENTER_SCOPES[presenter]),
      "created key: scopes are not those asked, or the creating key's",
    );
    want(same(data.metadata, f.metadata ?? {}), 'created key: metadata is not the one sent');
    want(data.createdBy === facts.presenterIds[presenter], 'created key: createdBy');
    if (f.expiresAt !== undefined) {
      want(data.expiresAt === iso(f.expiresAt), 'created key: expiresAt is not the one sent');
    } else if (f.expiresIn !== undefined) {
      const at = Date.parse(data.expiresAt as string) - f.expiresIn * 1000;
      want(at >= window.from && at <= Date.now(), 'created key: expiresAt is not now + expiresIn');
    } else {
      want(data.expiresAt === null, 'created key: expiresAt without one asked');
    }
    return;
  }
  if (route?.shape === 'roll') {
    checkKey(data, true, 'rolled key');
    const old = facts.keys.get(route.id) as KeyFacts;
    const f = c.fields ?? {};
    want(data.id !== route.id, 'rolled key: same id');
    want(
      data.name === old.name || patched(route.id, 'name').includes(data.name as string),
      "rolled key: name is not the old key's",
    );
    want(
      same(data.metadata, old.metadata) ||
        patched(route.id, 'metadata').some((m) => same(m, data.metadata)),
      "rolled key: metadata is not the old key's",
    );
    // The old key's expiry when the roll ran: another roll of the batch may have brought
    // it to its own now + grace first.
    const rolledBefore = facts.batch.some((o) => {
      if (o === c || o.route?.shape !== 'roll' || o.route.id !== route.id) return false;
      const grace = (o.fields?.expiresIn ?? 86_400) * 1000;
      const at = data.expiresAt === null ? Number.NaN : Date.parse(data.expiresAt as string);
      return at >= window.from + grace && at <= Date.now() + grace;
    });
    want(
      data.expiresAt === iso(old.expiresAt) ||
        rolledBefore ||
        patched(route.id, 'expiresAt').some((e) => data.expiresAt === iso(e as number)),
      `rolled key: expiresAt ${data.expiresAt} is not the old key's (${iso(old.expiresAt)})`,
    );
    want(same(data.scopes, f.scopes ?? old.scopes), 'rolled key: scopes');
    want(data.createdBy === old.createdBy, "rolled key: createdBy is not the old key's");
    want(data.lastUsedAt === null, 'rolled key: lastUsedAt');
    return;
  }
  // PATCH
  checkKey(data, false, 'updated key');
  const f = c.fields ?? {};
  want(data.id === (route as { id: string }).id, 'updated key: another id');
  if (f.name !== undefined) want(data.name === f.name, 'updated key: name is not the one sent');
  if (f.metadata !== undefined) want(same(data.metadata, f.metadata), 'updated key: metadata');
  if (f.expiresAt !== undefined) {
    want(
      data.expiresAt !== null && Date.parse(data.expiresAt as string) <= f.expiresAt,
      'updated key: expiresAt later than the one sent',
    );
  }
}

/**
 * The store after a batch is the store before it, changed only by the requests that
 * succeeded: a 201 (create or roll) adds its key, a 200 DELETE removes its id (with
 * cascade, the ids it answered: the named key and keys it made, transitively), a 200 PATCH
 * sets its fields, a 201 roll brings the old key's expiry to now + grace at the latest, and
 * lastUsedAt moves forward for the keys presented as valid. Anything else, from any
 * rejected request, fails here.
 */
function checkStore(
  before: Map<string, StoredKey>,
  after: Map<string, StoredKey>,
  outcomes: Array<{ c: Classified; answer: Answer }>,
  world: World,
  facts: BatchFacts,
  window: Window,
): void {
  const created = new Map<string, KeyJson>();
  const deleted: string[] = [];
  const cascades: string[][] = [];
  const patches = new Map<string, Classified[]>();
  const rolls = new Map<string, Classified[]>();
  const push = <T>(map: Map<string, T[]>, id: string, value: T) =>
    map.set(id, [...(map.get(id) ?? []), value]);
  for (const { c, answer } of outcomes) {
    if (answer.status >= 300 || c.route === null || c.method === 'HEAD') continue;
    const body = JSON.parse(answer.body.toString()) as { data?: KeyJson; revoked?: string[] };
    if (answer.status === 201 && body.data) created.set(body.data.id as string, body.data);
    if (c.route.shape === 'roll') push(rolls, c.route.id, c);
    if (c.route.shape !== 'item') continue;
    if (c.method === 'DELETE') {
      const ids = body.revoked ?? [c.route.id];
      deleted.push(...ids);
      if (body.revoked) cascades.push(body.revoked);
    }
    if (c.method === 'PATCH') push(patches, c.route.id, c);
  }
  expect(new Set(deleted).size, 'an id was deleted twice').toBe(deleted.length);
  const record = (id: string) =>
    before.get(id) ??
    (created.has(id)
      ? { createdBy: created.get(id)?.createdBy, ownerId: world.ownerId }
      : undefined);
  for (const id of deleted) {
    expect(record(id)?.ownerId, `deleted ${id} was not the account's`).toBe(world.ownerId);
  }
  // A cascade takes the keys its key made, and theirs: each id it names after the first
  // was made by one it names.
  for (const ids of cascades) {
    for (const id of ids.slice(1)) {
      expect(ids, `cascade took ${id}, made by none of the keys it revoked`).toContain(
        record(id)?.createdBy,
      );
    }
  }
  // ... and leaves none of them behind, unless the batch raced it with another delete or a
  // create by a key it revoked.
  const raced =
    outcomes.filter(
      ({ c, answer }) => answer.status < 300 && c.route?.shape === 'item' && c.method === 'DELETE',
    ).length > cascades.length;
  for (const ids of cascades) {
    for (const [id, k] of after) {
      if (k.createdBy === null || !ids.includes(k.createdBy) || created.has(id) || raced) continue;
      expect.fail(`cascade of ${ids[0]} left ${id}, made by ${k.createdBy}`);
    }
  }

  const expectedIds = [...before.keys()]
    .filter((id) => !deleted.includes(id))
    .concat([...created.keys()].filter((id) => !deleted.includes(id)));
  expect([...after.keys()].sort()).toEqual(expectedIds.sort());
  const presented = new Set(Object.values(facts.presenterIds));
  for (const [id, now] of after) {
    const made = created.get(id);
    if (made) {
      expect(now).toMatchObject({
        ownerId: world.ownerId,
        name: made.name,
        keyPrefix: made.keyPrefix,
        keySuffix: made.keySuffix,
        lastUsedAt: null,
        scopes: made.scopes,
        metadata: made.metadata,
        createdBy: made.createdBy,
      });
      expect(now.expiresAt?.toISOString() ?? null, `expiresAt of created ${id}`).toBe(
        made.expiresAt,
      );
      continue;
    }
    const was = before.get(id) as StoredKey;
    const { name, lastUsedAt, metadata, expiresAt, ...rest } = now;
    const {
      name: oldName,
      lastUsedAt: oldLastUsedAt,
      metadata: oldMetadata,
      expiresAt: oldExpiresAt,
      ...oldRest
    } = was;
    expect(rest, `record ${id} changed`).toEqual(oldRest);
    const patchedBy = (patches.get(id) ?? []).map((c) => c.fields ?? {});
    if (name !== oldName) {
      expect(
        patchedBy.map((f) => f.name),
        `name of ${id} changed`,
      ).toContain(name);
    }
    if (JSON.stringify(metadata) !== JSON.stringify(oldMetadata)) {
      expect(
        patchedBy.map((f) => JSON.stringify(f.metadata)),
        `metadata of ${id} changed`,
      ).toContain(JSON.stringify(metadata));
    }
    const at = expiresAt?.getTime() ?? null;
    const oldAt = oldExpiresAt?.getTime() ?? null;
    if (at !== oldAt) {
      expect(at !== null && (oldAt === null || at < oldAt), `expiry of ${id} extended`).toBe(true);
      const byPatch = patchedBy.some((f) => f.expiresAt === at);
      const byRoll = (rolls.get(id) ?? []).some((c) => {
        const grace = (c.fields?.expiresIn ?? 86_400) * 1000;
        return at !== null && at >= window.from + grace && at <= window.to + grace;
      });
      expect(byPatch || byRoll, `expiry of ${id} moved by no PATCH or roll`).toBe(true);
    }
    if (presented.has(id)) {
      expect((lastUsedAt?.getTime() ?? 0) >= (oldLastUsedAt?.getTime() ?? 0)).toBe(true);
    } else {
      expect(lastUsedAt, `lastUsedAt of ${id}, never presented`).toEqual(oldLastUsedAt);
    }
  }
}

function allKeys(world: World): string[] {
  return [
    world.main,
    world.foreign,
    world.revoked,
    world.expired,
    ...Object.values(world.scoped),
    ...world.targets,
  ].map((k) => k.rawKey);
}

/** The request as a failure message may show it: key header values masked. */
function describeWire(wire: WireRequest): string {
  const target =
    wire.target.length > 200
      ? `${wire.target.slice(0, 200)}… (${wire.target.length})`
      : wire.target;
  const headers = wire.headers.map(([name, value]) => {
    const shown = /api-key/i.test(name)
      ? `<${value.byteLength} bytes>`
      : JSON.stringify(value.toString('latin1').slice(0, 80));
    return `${name}: ${shown}`;
  });
  const body =
    wire.body === undefined
      ? 'none'
      : `${wire.body.byteLength} bytes ${JSON.stringify(wire.body.subarray(0, 120).toString('utf8'))}`;
  return `${wire.method} ${target} [${headers.join('; ')}] body ${body}${wire.chunkSize === null ? '' : ` chunked/${wire.chunkSize}`}${wire.raw ? ' raw' : ''}`;
}
