import { CHEAP_ARGON2 } from '@keyward/testing';
import { describe, expect, it } from 'vitest';
import {
  type AuthenticatedKey,
  createKeyService,
  type KeyService,
  KeywardError,
  memoryStore,
} from '../src/index.js';
import type { LimitVerdict } from '../src/limits.js';

/** A service on a clock the test moves. */
function clocked(start: string) {
  let now = Date.parse(start);
  const store = memoryStore();
  const service = createKeyService({
    store,
    argon2: CHEAP_ARGON2,
    now: () => new Date(now),
  });
  return {
    service,
    store,
    set(at: string) {
      now = Date.parse(at);
    },
  };
}

async function authenticated(
  service: ReturnType<typeof createKeyService>,
  rawKey: string,
): Promise<AuthenticatedKey> {
  const result = await service.verify(rawKey);
  if (!result.ok) throw new Error(`not verified: ${result.reason}`);
  return result.key;
}

/** Spends `times` requests of `cost`; the verdicts. */
async function spend(
  service: ReturnType<typeof createKeyService>,
  key: AuthenticatedKey,
  times: number,
  cost = 1,
): Promise<LimitVerdict[]> {
  const verdicts: LimitVerdict[] = [];
  for (let i = 0; i < times; i++) verdicts.push(await service.checkLimits(key, cost));
  return verdicts;
}

const admitted = (verdicts: LimitVerdict[]) => verdicts.filter((v) => v.ok).length;

function refusal(verdict: LimitVerdict | undefined): KeywardError {
  if (!verdict || verdict.ok) throw new Error('expected a refusal');
  return verdict.error;
}

describe('credits refill', () => {
  it('a daily refill sets the balance to its amount at 00:00 UTC, not before', async () => {
    const t = clocked('2027-03-14T23:59:58.000Z');
    const { rawKey } = await t.service.create('acct', 'daily', {
      credits: { remaining: 3, refill: { amount: 5, every: 'day' } },
    });
    const key = await authenticated(t.service, rawKey);
    const before = await spend(t.service, key, 4);
    expect(admitted(before)).toBe(3);
    const error = refusal(before[3]);
    expect(error.code).toBe('credits_exhausted');
    expect(error.status).toBe(429);
    // Until the refill at midnight: 2 s.
    expect(error.retryAfter).toBe(2);
    t.set('2027-03-14T23:59:59.999Z');
    expect(refusal(await t.service.checkLimits(key, 1)).code).toBe('credits_exhausted');
    t.set('2027-03-15T00:00:00.000Z');
    expect(admitted(await spend(t.service, key, 7))).toBe(5);
    // Refilled to the amount, not added to what was left.
    t.set('2027-03-16T00:00:01.000Z');
    await t.service.close();
    const [listed] = await t.service.list('acct');
    expect(listed?.credits).toEqual({
      remaining: 5,
      refill: { amount: 5, every: 'day' },
      strict: false,
    });
  });

  it('a monthly refill comes on the first of the month at 00:00 UTC, across a short month', async () => {
    const t = clocked('2027-02-27T12:00:00.000Z');
    const { rawKey } = await t.service.create('acct', 'monthly', {
      credits: { remaining: 1, refill: { amount: 4, every: 'month' } },
    });
    const key = await authenticated(t.service, rawKey);
    expect(admitted(await spend(t.service, key, 2))).toBe(1);
    t.set('2027-02-28T23:59:59.000Z');
    const error = refusal(await t.service.checkLimits(key, 1));
    expect(error.retryAfter).toBe(1);
    t.set('2027-03-01T00:00:00.000Z');
    expect(admitted(await spend(t.service, key, 6))).toBe(4);
    // A whole month without use: one refill, to the amount.
    t.set('2027-05-20T00:00:00.000Z');
    expect(admitted(await spend(t.service, key, 6, 2))).toBe(2);
  });

  it('without a refill, an exhausted balance answers credits_exhausted with no Retry-After', async () => {
    const t = clocked('2027-03-14T10:00:00.000Z');
    const { rawKey } = await t.service.create('acct', 'once', { credits: { remaining: 2 } });
    const key = await authenticated(t.service, rawKey);
    const verdicts = await spend(t.service, key, 3);
    expect(admitted(verdicts)).toBe(2);
    expect(refusal(verdicts[2]).retryAfter).toBeUndefined();
  });
});

describe('rate limit windows', () => {
  it('windows are aligned to the epoch: a new one starts at :00 whatever the first request', async () => {
    const t = clocked('2027-03-14T10:00:59.500Z');
    const { rawKey } = await t.service.create('acct', 'minute', {
      rateLimit: { limit: 2, windowSec: 60 },
    });
    const key = await authenticated(t.service, rawKey);
    const verdicts = await spend(t.service, key, 3);
    expect(admitted(verdicts)).toBe(2);
    expect(verdicts[1]?.headers).toEqual({
      'RateLimit-Policy': '"window";q=2;w=60',
      RateLimit: '"window";r=0;t=1',
    });
    expect(refusal(verdicts[2]).retryAfter).toBe(1);
    t.set('2027-03-14T10:01:00.000Z');
    const next = await spend(t.service, key, 1);
    expect(next[0]).toEqual({
      ok: true,
      headers: { 'RateLimit-Policy': '"window";q=2;w=60', RateLimit: '"window";r=1;t=60' },
    });
  });

  it('a request refused by its credits costs nothing of the window', async () => {
    const t = clocked('2027-03-14T10:00:00.000Z');
    const { rawKey, id } = await t.service.create('acct', 'both', {
      rateLimit: { limit: 3, windowSec: 60 },
      credits: { remaining: 1 },
    });
    const key = await authenticated(t.service, rawKey);
    expect(admitted(await spend(t.service, key, 3))).toBe(1);
    // Top the balance up: the window still has 2 of its 3.
    await t.service.update('acct', id, { credits: { remaining: 10 } });
    const fresh = await authenticated(t.service, rawKey);
    expect(admitted(await spend(t.service, fresh, 5))).toBe(2);
  });

  it('a cost larger than the limit is always refused, and costs nothing', async () => {
    const t = clocked('2027-03-14T10:00:00.000Z');
    const { rawKey } = await t.service.create('acct', 'small', {
      rateLimit: { limit: 4, windowSec: 10 },
    });
    const key = await authenticated(t.service, rawKey);
    expect(refusal(await t.service.checkLimits(key, 5)).code).toBe('rate_limited');
    expect(admitted(await spend(t.service, key, 2, 2))).toBe(2);
  });

  it('a store that fails a claim answers 503, never unlimited', async () => {
    const store = memoryStore();
    const service = createKeyService({ store, argon2: CHEAP_ARGON2, onError: () => {} });
    const { rawKey } = await service.create('acct', 'k', {
      rateLimit: { limit: 5, windowSec: 60 },
    });
    const key = await authenticated(service, rawKey);
    store.claimWindow = async () => {
      throw new Error('connection refused');
    };
    await expect(service.checkLimits(key, 1)).rejects.toMatchObject({
      code: 'service_unavailable',
      status: 503,
    });
  });
});

describe('leases', () => {
  /** A memory store that counts the window claims (`counts`) and the credit claims
   * (`creditCounts`) made of it, and the units they granted. */
  function countingStore() {
    const store = memoryStore();
    const counts = { claims: 0, granted: 0 };
    const creditCounts = { claims: 0, granted: 0 };
    const claimWindow = store.claimWindow;
    store.claimWindow = async (...args) => {
      counts.claims++;
      const grant = await claimWindow(...args);
      counts.granted += grant.granted;
      return grant;
    };
    const claimCredits = store.claimCredits;
    store.claimCredits = async (...args) => {
      creditCounts.claims++;
      const grant = await claimCredits(...args);
      creditCounts.granted += grant?.granted ?? 0;
      return grant;
    };
    return { store, counts, creditCounts };
  }

  /** `requests` checks of cost 1, one after another, the event loop turning every
   * `turnEvery` (as a server's does between bursts, so a claim's answer lands): how many
   * were answered synchronously, and the most units held unspent at any point. */
  async function spendBusily(
    service: KeyService,
    key: AuthenticatedKey,
    requests: number,
    turnEvery: number,
    granted: { granted: number },
  ): Promise<{ sync: number; mostHeld: number }> {
    let sync = 0;
    let mostHeld = 0;
    for (let i = 1; i <= requests; i++) {
      const verdict = service.checkLimits(key, 1);
      if (verdict instanceof Promise) await verdict;
      else sync++;
      mostHeld = Math.max(mostHeld, granted.granted - i);
      if (i % turnEvery === 0) await new Promise(setImmediate);
    }
    return { sync, mostHeld };
  }

  it('a busy key is served from its lease with no wait: the lease is topped up before it runs out, and never holds more than 1,000', async () => {
    const { store, counts } = countingStore();
    const service = createKeyService({ store, argon2: CHEAP_ARGON2 });
    const { rawKey } = await service.create('acct', 'busy', {
      rateLimit: { limit: 1_000_000, windowSec: 86_400 },
    });
    const key = await authenticated(service, rawKey);
    const { sync, mostHeld } = await spendBusily(service, key, 5000, 50, counts);
    // Only the first request waited for a claim; each later one was answered at once.
    expect(sync).toBe(4999);
    expect(mostHeld).toBeLessThanOrEqual(1000);
    // The first lease, then a top-up each time about 500 had been spent: still 2 claims
    // per 1,000 requests at most.
    expect(counts.claims).toBeLessThanOrEqual(11);
    expect(counts.claims).toBeGreaterThanOrEqual(9);
    await service.close();
  });

  it('credits are topped up the same way: no request waits, and at most 20 × cost are held', async () => {
    const { store, creditCounts } = countingStore();
    const service = createKeyService({ store, argon2: CHEAP_ARGON2 });
    const { rawKey, id } = await service.create('acct', 'paid', {
      credits: { remaining: 100_000 },
    });
    const key = await authenticated(service, rawKey);
    const { sync, mostHeld } = await spendBusily(service, key, 1000, 5, creditCounts);
    expect(sync).toBe(999);
    expect(mostHeld).toBeLessThanOrEqual(20);
    // A lease of 20, topped up each time about 10 were spent.
    expect(creditCounts.claims).toBeGreaterThanOrEqual(90);
    expect(creditCounts.claims).toBeLessThanOrEqual(101);
    await service.close();
    const [listed] = await service.list('acct');
    expect(listed?.id).toBe(id);
    expect(listed?.credits?.remaining).toBe(100_000 - 1000);
  });

  it('a failed top-up fails no request, and is not tried again for a second', async () => {
    const { store, counts } = countingStore();
    let now = Date.parse('2027-03-14T10:00:00.000Z');
    const errors: unknown[] = [];
    const service = createKeyService({
      store,
      argon2: CHEAP_ARGON2,
      now: () => new Date(now),
      onError: (error) => errors.push(error),
    });
    const { rawKey } = await service.create('acct', 'k', {
      rateLimit: { limit: 1000, windowSec: 3600 },
    });
    const key = await authenticated(service, rawKey);
    // The first lease (L = 100), then half of it spent.
    expect(admitted(await spend(service, key, 50))).toBe(50);
    const claimWindow = store.claimWindow;
    store.claimWindow = async () => {
      counts.claims++;
      throw new Error('connection refused');
    };
    // The top-up starts at the 51st request, fails, and the lease still serves its 50.
    const claimsBefore = counts.claims;
    expect(admitted(await spend(service, key, 50))).toBe(50);
    expect(counts.claims).toBe(claimsBefore + 1);
    expect(errors).toHaveLength(1);
    // The lease is empty: this request claims, and answers 503, as without a top-up.
    await expect(service.checkLimits(key, 1)).rejects.toMatchObject({
      code: 'service_unavailable',
    });
    store.claimWindow = claimWindow;
    now += 1000;
    expect(admitted(await spend(service, key, 60))).toBe(60);
    await service.close();
  });
  it('close() waits for a top-up in flight and gives its grant back', async () => {
    const { store } = countingStore();
    const now = Date.parse('2027-03-14T10:00:00.000Z');
    const service = createKeyService({ store, argon2: CHEAP_ARGON2, now: () => new Date(now) });
    const { rawKey, id } = await service.create('acct', 'k', {
      rateLimit: { limit: 1000, windowSec: 3600 },
    });
    const key = await authenticated(service, rawKey);
    // The first lease (L = 100), half of it spent.
    expect(admitted(await spend(service, key, 50))).toBe(50);
    // The next request starts a top-up, held here until the test lets it go.
    let release = () => {};
    const claimWindow = store.claimWindow;
    store.claimWindow = async (...args) => {
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      return claimWindow(...args);
    };
    expect(admitted(await spend(service, key, 1))).toBe(1);
    let closed = false;
    const closing = service.close().then(() => {
      closed = true;
    });
    await new Promise(setImmediate);
    expect(closed).toBe(false);
    release();
    await closing;
    // All that is left counted as used is what was admitted: 51 of 1,000.
    store.claimWindow = claimWindow;
    const windowStart = now - (now % 3_600_000);
    const probe = await store.claimWindow('acct', id, {
      windowStart,
      limit: 1000,
      want: 1,
      atLeast: 1,
    });
    expect(probe).toEqual({ granted: 1, remaining: 1000 - 51 - 1 });
  });
});

describe('the bound across instances whose clocks disagree', () => {
  it('counted on the clock furthest ahead, a window admits at most limit + (N − 1) · L; on one behind, up to 2 · limit', async () => {
    // Three instances share a store; A's clock is 300 ms ahead of B's and C's. Limit 100
    // a second, so L = 10. Times below are B's clock, from the start T of a window.
    const LIMIT = 100;
    const L = Math.ceil(LIMIT / 10);
    const store = memoryStore();
    const T = Date.parse('2026-06-01T00:00:00.000Z');
    let t = T;
    const services = [300, 0, 0].map((offset) =>
      createKeyService({ store, argon2: CHEAP_ARGON2, now: () => new Date(t + offset) }),
    );
    const [a, b, c] = services as [KeyService, KeyService, KeyService];
    const { rawKey } = await a.create('acct', 'skewed', {
      rateLimit: { limit: LIMIT, windowSec: 1 },
    });
    const keys = new Map<KeyService, AuthenticatedKey>();
    for (const service of services) keys.set(service, await authenticated(service, rawKey));
    /** `count` requests on `service` at B's time T + `at`; how many were admitted. */
    const send = async (service: KeyService, at: number, count: number) => {
      t = T + at;
      let ok = 0;
      for (let i = 0; i < count; i++) {
        let verdict = service.checkLimits(keys.get(service) as AuthenticatedKey, 1);
        if (verdict instanceof Promise) verdict = await verdict;
        if (verdict.ok) ok++;
      }
      return ok;
    };

    // All three in window w. A spends 60; B and C take a lease each and spend one unit.
    expect(await send(a, 650, 60)).toBe(60);
    expect(await send(b, 650, 1)).toBe(1);
    expect(await send(c, 650, 1)).toBe(1);
    // A's clock crosses into w + 1 (B's and C's have 290 ms to go): A takes all of it.
    expect(await send(a, 710, 150)).toBe(LIMIT);
    // B and C, still in w, spend what their leases hold, and no more: the store has moved
    // on, so their claims for w get nothing.
    const late = (await send(b, 720, 20)) + (await send(c, 720, 20));
    expect(late).toBeGreaterThan(0);
    expect(late).toBeLessThanOrEqual(2 * L);

    // A's window w + 1 (B's T + 700 to T + 1700): A's 100 and B's and C's late units.
    const onA = LIMIT + late;
    expect(onA).toBeGreaterThan(LIMIT);
    expect(onA).toBeLessThanOrEqual(LIMIT + (services.length - 1) * L);
    // B's window w (T to T + 1000): everything above, A's head start included.
    const onB = 60 + 2 + LIMIT + late;
    expect(onB).toBeLessThanOrEqual(2 * LIMIT);
    console.info(
      `clock skew 300 ms: A's window admitted ${onA} (bound ${LIMIT + 2 * L}), B's ${onB} (2 · limit = ${2 * LIMIT})`,
    );
    await Promise.all(services.map((service) => service.close()));
  });
});

describe('revoke, expiry and roll leave no lease stranded', () => {
  it('roll moves the balance to the new key, including what this instance held', async () => {
    const t = clocked('2027-03-14T10:00:00.000Z');
    const { rawKey, id } = await t.service.create('acct', 'old', {
      credits: { remaining: 100 },
      rateLimit: { limit: 50, windowSec: 60 },
    });
    const key = await authenticated(t.service, rawKey);
    expect(admitted(await spend(t.service, key, 3))).toBe(3);
    const rolled = await t.service.roll('acct', id, { expiresIn: 60 });
    expect(rolled?.credits).toEqual({ remaining: 97, refill: null, strict: false });
    expect(rolled?.rateLimit).toEqual({ limit: 50, windowSec: 60 });
    const old = (await t.service.list('acct')).find((k) => k.id === id);
    expect(old?.credits?.remaining).toBe(0);
    // The new key spends the moved balance and the old key's window count.
    const next = await authenticated(t.service, rolled?.rawKey ?? '');
    expect(admitted(await spend(t.service, next, 60))).toBe(47);
    // The old key, in its grace period, has nothing left to spend.
    const stale = await authenticated(t.service, rawKey);
    expect(refusal(await t.service.checkLimits(stale, 1)).code).toBe('credits_exhausted');
    await t.service.close();
    const total = (await t.service.list('acct')).reduce(
      (sum, k) => sum + (k.credits?.remaining ?? 0),
      0,
    );
    expect(total).toBe(100 - 3 - 47);
  });

  it('revoke deletes the counts with the key; an expired key leases nothing and gives back what it held', async () => {
    const t = clocked('2027-03-14T10:00:00.000Z');
    const { rawKey, id } = await t.service.create('acct', 'short', {
      credits: { remaining: 100 },
      expiresIn: 60,
    });
    const key = await authenticated(t.service, rawKey);
    expect(admitted(await spend(t.service, key, 1))).toBe(1);
    // A lease is out: the store holds less than 99.
    expect(t.store.snapshot()[0]?.credits?.remaining).toBeLessThan(99);
    t.set('2027-03-14T10:01:00.000Z');
    expect(await t.service.verify(rawKey)).toEqual({ ok: false, reason: 'expired' });
    await t.service.close();
    expect(t.store.snapshot()[0]?.credits?.remaining).toBe(99);

    const other = clocked('2027-03-14T10:00:00.000Z');
    const created = await other.service.create('acct', 'revoked', {
      rateLimit: { limit: 10, windowSec: 60 },
    });
    const revokedKey = await authenticated(other.service, created.rawKey);
    await spend(other.service, revokedKey, 1);
    expect(await other.service.revoke('acct', created.id)).toBe(true);
    expect(other.store.snapshot()).toEqual([]);
    expect(
      await other.store.claimWindow('acct', created.id, {
        windowStart: Date.parse('2027-03-14T10:00:00.000Z'),
        limit: 10,
        want: 10,
        atLeast: 1,
      }),
    ).toEqual({ granted: 0, remaining: 0 });
    void id;
  });
});

describe('fields', () => {
  it('create and update check rateLimit and credits, with clear messages', async () => {
    const { service } = clocked('2027-03-14T10:00:00.000Z');
    const bad: [unknown, unknown, RegExp][] = [
      [{ limit: 0, windowSec: 10 }, undefined, /rateLimit.limit/],
      [{ limit: 10, windowSec: 86_401 }, undefined, /rateLimit.windowSec/],
      [{ limit: 10 }, undefined, /rateLimit.windowSec/],
      [{ limit: 10, windowSec: 1, burst: 2 }, undefined, /rateLimit/],
      ['10/s', undefined, /rateLimit/],
      [undefined, { remaining: -1 }, /credits.remaining/],
      [undefined, { remaining: 2 ** 31 }, /credits.remaining/],
      [undefined, { remaining: 1, refill: { amount: 5, every: 'week' } }, /every/],
      [undefined, { remaining: 1, refill: { amount: 0, every: 'day' } }, /amount/],
      [undefined, { remaining: 1, strict: 'yes' }, /strict/],
    ];
    for (const [rateLimit, credits, message] of bad) {
      await expect(service.create('acct', 'k', { rateLimit, credits })).rejects.toMatchObject({
        code: 'invalid_request',
        message: expect.stringMatching(message),
      });
    }
    const created = await service.create('acct', 'k', {
      rateLimit: { limit: 10, windowSec: 1 },
      credits: { remaining: 0, refill: null },
    });
    expect(created.rateLimit).toEqual({ limit: 10, windowSec: 1 });
    expect(created.credits).toEqual({ remaining: 0, refill: null, strict: false });
    const cleared = await service.update('acct', created.id, { rateLimit: null, credits: null });
    expect(cleared).toMatchObject({ rateLimit: null, credits: null });
    await expect(
      service.update('acct', created.id, { rateLimit: { limit: 'x', windowSec: 1 } }),
    ).rejects.toBeInstanceOf(KeywardError);
  });
});
