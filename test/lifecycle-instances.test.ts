import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Instance, postgresInstances } from './support/postgres-instances.js';
import { postgresReachable } from './support/services.js';

/**
 * Expiry, roll and cascade revocation across two instances of a host app that share a
 * Postgres store and a LISTEN/NOTIFY bus, over HTTP on loopback, with warm caches: what a
 * client of either instance sees, to the millisecond.
 */

const postgres = await postgresReachable();
const GUARDED = '/test/protected';
const BASE = '/v1/api-keys';
const cluster = postgresInstances('keyward_life', GUARDED);

async function get(instance: Instance, rawKey: string): Promise<number> {
  const res = await fetch(`${instance.server.url}${GUARDED}`, { headers: { 'X-API-Key': rawKey } });
  await res.arrayBuffer();
  return res.status;
}

async function call(
  instance: Instance,
  rawKey: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${instance.server.url}${path}`, {
    method,
    headers: {
      'X-API-Key': rawKey,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** `p` in (0, 1], nearest rank. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
}

let a: Instance;
let b: Instance;

describe.skipIf(!postgres)('lifecycle across two instances (Postgres store and bus, HTTP)', () => {
  beforeAll(async () => {
    await cluster.setUp();
    [a, b] = await Promise.all([cluster.start(), cluster.start()]);
  });

  afterAll(() => cluster.tearDown());

  it('a key with expiresAt 2 s ahead is accepted until then and refused from that instant, on both warm instances', async () => {
    const owner = `life-${randomBytes(4).toString('hex')}`;
    const start = Date.now();
    const keys = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        a.service.create(owner, `expiring ${i}`, {
          expiresAt: new Date(start + 2_000 + i * 37).toISOString(),
        }),
      ),
    );
    for (const key of keys)
      for (const instance of [a, b]) expect(await get(instance, key.rawKey)).toBe(200);
    for (const instance of [a, b]) {
      expect(instance.service.stats().cachedKeys).toBeGreaterThanOrEqual(keys.length);
    }

    const lags: number[] = [];
    let lateAccepts = 0;
    let polls = 0;
    await Promise.all(
      keys.flatMap((key) =>
        [a, b].map(async (instance) => {
          const expiresAt = (key.expiresAt as Date).getTime();
          for (;;) {
            const sent = Date.now();
            const status = await get(instance, key.rawKey);
            polls++;
            if (status === 200) {
              // Accepted: the request must have reached the server before expiresAt. A 1 ms
              // margin covers the clock read between our send and the server's check.
              if (sent > expiresAt + 1) lateAccepts++;
              continue;
            }
            expect(status).toBe(401);
            lags.push(Date.now() - expiresAt);
            return;
          }
        }),
      ),
    );
    const p50 = percentile(lags, 0.5);
    const p99 = percentile(lags, 0.99);
    console.log(
      `expiry across 2 instances: ${lags.length} key×instance pairs, ${polls} polls, refused after expiresAt: p50 ${p50} ms, p99 ${p99} ms (upper bounds: poll round trip included), accepted after expiresAt: ${lateAccepts}`,
    );
    expect(lateAccepts).toBe(0);
    expect(lags.every((lag) => lag >= 0)).toBe(true);
    // Each poll is a loopback round trip; refusal follows the first poll sent after expiry.
    expect(p99).toBeLessThan(250);
  });

  it('roll: both keys work on both instances during the grace, only the new one after it', async () => {
    const owner = `life-${randomBytes(4).toString('hex')}`;
    const root = await a.service.create(owner, 'admin');
    const old = await a.service.create(owner, 'prod');
    for (const instance of [a, b]) expect(await get(instance, old.rawKey)).toBe(200);
    const rolled = await call(a, root.rawKey, 'POST', `${BASE}/${old.id}/roll`, { expiresIn: 1 });
    expect(rolled.status).toBe(201);
    const next = (rolled.json.data as { rawKey: string }).rawKey;
    const graceEnds = Date.now() + 1000;
    for (const instance of [a, b]) {
      expect(await get(instance, old.rawKey)).toBe(200);
      expect(await get(instance, next)).toBe(200);
    }
    await sleep(Math.max(0, graceEnds - Date.now()) + 50);
    for (const instance of [a, b]) {
      expect(await get(instance, old.rawKey)).toBe(401);
      expect(await get(instance, next)).toBe(200);
    }
  });

  it('roll with expiresIn 0: the other instance refuses the old key within the bus delay', async () => {
    const owner = `life-${randomBytes(4).toString('hex')}`;
    const root = await a.service.create(owner, 'admin');
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const old = await a.service.create(owner, `leaked ${i}`);
      for (const instance of [a, b]) expect(await get(instance, old.rawKey)).toBe(200);
      const rolled = await call(a, root.rawKey, 'POST', `${BASE}/${old.id}/roll`, {
        expiresIn: 0,
      });
      expect(rolled.status).toBe(201);
      const answered = Date.now();
      // Refused at once by the instance that rolled it.
      expect(await get(a, old.rawKey)).toBe(401);
      while ((await get(b, old.rawKey)) === 200) {
        if (Date.now() - answered > 2000) throw new Error('B still accepts the old key after 2 s');
      }
      delays.push(Date.now() - answered);
      await a.service.revoke(owner, (rolled.json.data as { id: string }).id);
      await a.service.revoke(owner, old.id);
    }
    console.log(
      `roll expiresIn 0, other instance: refused ${percentile(delays, 0.5)} ms (p50), ${percentile(delays, 1)} ms (max) after the answer`,
    );
    expect(percentile(delays, 1)).toBeLessThan(100);
  });

  it('cascade: three generations and a sibling tree revoked from the root in one call; none accepted after the answer (A) or the bus delay (B)', async () => {
    const owner = `life-${randomBytes(4).toString('hex')}`;
    const root = await a.service.create(owner, 'root');
    const make = async (parent: string, name: string) => {
      const res = await call(a, parent, 'POST', BASE, { name });
      expect(res.status).toBe(201);
      return res.json.data as { id: string; rawKey: string };
    };
    const child = await make(root.rawKey, 'child');
    const grandchild = await make(child.rawKey, 'grandchild');
    const greatGrandchild = await make(grandchild.rawKey, 'great-grandchild');
    const sibling = await make(root.rawKey, 'sibling');
    const nephew = await make(sibling.rawKey, 'nephew');
    const bystander = await a.service.create(owner, 'bystander');
    const tree = [root, child, grandchild, greatGrandchild, sibling, nephew];
    for (const key of [...tree, bystander]) {
      for (const instance of [a, b]) expect(await get(instance, key.rawKey)).toBe(200);
    }

    const res = await call(b, child.rawKey, 'DELETE', `${BASE}/${root.id}?cascade=true`);
    const answered = Date.now();
    expect(res.status).toBe(200);
    expect((res.json.revoked as string[])[0]).toBe(root.id);
    expect(new Set(res.json.revoked as string[])).toEqual(new Set(tree.map((k) => k.id)));
    // The instance that answered: none accepted from the answer on.
    for (const key of tree) expect(await get(b, key.rawKey)).toBe(401);
    // The other: each refused within the bus delay, and never accepted again.
    let lastAcceptMs = 0;
    for (const key of tree) {
      while ((await get(a, key.rawKey)) === 200) {
        lastAcceptMs = Date.now() - answered;
        if (lastAcceptMs > 2000) throw new Error('A still accepts a revoked descendant after 2 s');
      }
    }
    for (const key of tree)
      for (const instance of [a, b]) expect(await get(instance, key.rawKey)).toBe(401);
    console.log(
      `cascade of ${tree.length} keys: other instance's last accept ${lastAcceptMs} ms after the answer (0: none)`,
    );
    expect(lastAcceptMs).toBeLessThan(100);
    expect(await get(a, bystander.rawKey)).toBe(200);
  });
});
