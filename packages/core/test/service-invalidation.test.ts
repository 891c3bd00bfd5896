import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { memoryBus } from '../src/bus.js';
import { createHttpHandler, type HttpRequest } from '../src/http.js';
import { memoryStore } from '../src/memory-store.js';
import type { KeyStore } from '../src/store.js';
import { service } from './test-fixtures.js';

/** The memory store, with the store reads of each lookup counted (one argon2 run follows
 * each read of a well-formed key), and reads of `gated` lookups held until released. */
function observedStore(inner = memoryStore()) {
  const reads = new Map<string, number>();
  const gated = new Set<string>();
  const waiting: Array<() => void> = [];
  const store: KeyStore = {
    ...inner,
    findByLookup: async (lookup) => {
      reads.set(lookup, (reads.get(lookup) ?? 0) + 1);
      const found = await inner.findByLookup(lookup);
      if (gated.has(lookup)) await new Promise<void>((resolve) => waiting.push(resolve));
      return found;
    },
  };
  const releaseAll = () => {
    for (const resolve of waiting.splice(0)) resolve();
  };
  return { store, inner, reads, gated, releaseAll, waiting };
}

const lookupOf = (rawKey: string) => rawKey.slice(4, 16);

describe('key service: invalidation is per key', () => {
  it('a rename of key A while key B is being verified does not keep B out of the cache', async () => {
    const { store, gated, releaseAll, waiting } = observedStore();
    const keys = service({ store });
    const a = await keys.create('acct_a', 'a');
    const b = await keys.create('acct_b', 'b');
    gated.add(lookupOf(b.rawKey));
    const pending = keys.verify(b.rawKey);
    while (waiting.length === 0) await sleep(1);
    await keys.rename('acct_a', a.id, 'renamed');
    releaseAll();
    expect((await pending).ok).toBe(true);
    expect(keys.verifyCached(b.rawKey)?.id).toBe(b.id);
  });

  it('with one tenant renaming its key as fast as it can (bus, two instances), another tenant’s key costs one store read and one argon2 run per cache TTL on each', async () => {
    const bus = memoryBus();
    const shared = memoryStore();
    const one = observedStore(shared);
    const two = observedStore(shared);
    const ttlMs = 200;
    const options = { bus, cache: { ttlMs }, maxRenamesPerMinute: 1_000_000 };
    const s1 = service({ ...options, store: one.store });
    const s2 = service({ ...options, store: two.store });
    await Promise.all([s1.ready(), s2.ready()]);
    const noisy = await s1.create('acct_noisy', 'noisy');
    const quiet = await s1.create('acct_quiet', 'quiet');

    let done = false;
    let renames = 0;
    const renaming = (async () => {
      while (!done) {
        await s1.rename('acct_noisy', noisy.id, `n${renames++}`);
        await yieldToLoop();
      }
    })();
    let verifications = 0;
    const using = [s1, s2].map(async (s) => {
      while (!done) {
        expect((await s.verify(quiet.rawKey)).ok).toBe(true);
        verifications++;
        await yieldToLoop();
      }
    });
    const durationMs = 1_000;
    await sleep(durationMs);
    done = true;
    await Promise.all([renaming, ...using]);

    const bound = Math.ceil(durationMs / ttlMs) + 1;
    const quietReads = [one, two].map((s) => s.reads.get(lookupOf(quiet.rawKey)) ?? 0);
    console.info(
      `per-key invalidation: ${renames} renames, ${verifications} verifications of the quiet key; its store reads (= argon2 runs) per instance: ${quietReads.join(', ')} (bound ${bound})`,
    );
    expect(renames).toBeGreaterThan(100);
    for (const count of quietReads) expect(count).toBeLessThanOrEqual(bound);
  });
});

describe('key service: a verification in flight during an invalidation of its own key', () => {
  it('a request that arrives after the revoke and joins the verification in flight is refused, and nothing is cached', async () => {
    const { store, gated, releaseAll, waiting } = observedStore();
    const keys = service({ store });
    const { rawKey, id } = await keys.create('acct_1', 'k');
    gated.add(lookupOf(rawKey));
    const before = keys.verify(rawKey);
    while (waiting.length === 0) await sleep(1);
    await keys.revoke('acct_1', id);
    const after = keys.verify(rawKey);
    releaseAll();
    // The retry reads the store again, past the gate as well.
    while (waiting.length === 0) await sleep(1);
    releaseAll();
    await before; // arrived before the revoke: either answer is fair
    expect(await after).toEqual({ ok: false, reason: 'unknown_key' });
    expect(keys.verifyCached(rawKey)).toBeUndefined();
  });

  it('a bus event for the key while its verification is in flight keeps it out of the cache', async () => {
    const { store, gated, releaseAll, waiting } = observedStore();
    const keys = service({ store });
    const { rawKey, id } = await keys.create('acct_1', 'k');
    gated.add(lookupOf(rawKey));
    const pending = keys.verify(rawKey);
    while (waiting.length === 0) await sleep(1);
    keys.invalidate(id);
    releaseAll();
    expect((await pending).ok).toBe(true);
    expect(keys.verifyCached(rawKey)).toBeUndefined();
  });
});

describe('key service: renames per account', () => {
  it('past maxRenamesPerMinute, rename answers rate_limited with a retryAfter; other accounts are unaffected', async () => {
    const keys = service({ maxRenamesPerMinute: 3 });
    const mine = await keys.create('acct_1', 'k');
    const theirs = await keys.create('acct_2', 'k');
    for (let i = 0; i < 3; i++)
      expect(await keys.rename('acct_1', mine.id, `n${i}`)).not.toBeNull();
    const error = await keys.rename('acct_1', mine.id, 'again').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'rate_limited', status: 429 });
    expect((error as { retryAfter: number }).retryAfter).toBeGreaterThanOrEqual(1);
    expect((error as { retryAfter: number }).retryAfter).toBeLessThanOrEqual(60);
    expect((await keys.list('acct_1'))[0]?.name).toBe('n2');
    expect(await keys.rename('acct_2', theirs.id, 'fine')).not.toBeNull();
  });

  it('over HTTP, the refused rename answers 429 rate_limited with Retry-After', async () => {
    const keys = service({ maxRenamesPerMinute: 1 });
    const { rawKey, id } = await keys.create('acct_1', 'k');
    const http = createHttpHandler(keys);
    const patch = (name: string): HttpRequest => ({
      method: 'PATCH',
      path: `/v1/api-keys/${id}`,
      headers: { 'x-api-key': rawKey, 'content-type': 'application/json' },
      body: (async function* () {
        yield Buffer.from(JSON.stringify({ name }));
      })(),
    });
    expect((await http.handle(patch('one'))).status).toBe(200);
    const refused = await http.handle(patch('two'));
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['Retry-After'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(refused.body)).toEqual({
      success: false,
      error: { code: 'rate_limited', message: 'Too many requests. Retry later.' },
    });
  });
});

describe('key service: an event whose publish failed', () => {
  it('is sent again until it goes through, so other instances do refuse the revoked key', async () => {
    const bus = memoryBus();
    const store = memoryStore();
    let failures = 2;
    const errors: unknown[] = [];
    const flaky = {
      ...bus,
      publish: (event: Parameters<typeof bus.publish>[0]) =>
        failures-- > 0 ? Promise.reject(new Error('connection reset')) : bus.publish(event),
    };
    // A cache TTL far beyond the test: only the event can take the key out of B's cache.
    const cache = { ttlMs: 600_000 };
    const a = service({ store, bus: flaky, cache, onError: (error) => errors.push(error) });
    const b = service({ store, bus, cache });
    await Promise.all([a.ready(), b.ready()]);
    const key = await a.create('acct_1', 'to revoke');
    expect((await b.verify(key.rawKey)).ok).toBe(true);

    await a.revoke('acct_1', key.id);
    // The revoke answered after the first failed publish; B still has the key cached.
    expect(b.verifyCached(key.rawKey)?.id).toBe(key.id);
    await vi.waitFor(() => expect(b.verifyCached(key.rawKey)).toBeUndefined(), {
      timeout: 3_000,
    });
    expect((await b.verify(key.rawKey)).ok).toBe(false);
    expect(failures).toBe(-1);
    expect(errors.map((error) => (error as Error).message)).toEqual([
      expect.stringMatching(/could not publish the revoked event of key_\w+; sending it again/),
    ]);
    await Promise.all([a.close(), b.close()]);
  });

  it('is given up, and said so, when the service closes first', async () => {
    const errors: unknown[] = [];
    const down = {
      ...memoryBus(),
      publish: () => Promise.reject(new Error('bus down')),
    };
    const a = service({ store: memoryStore(), bus: down, onError: (error) => errors.push(error) });
    const key = await a.create('acct_1', 'to revoke');
    await a.revoke('acct_1', key.id);
    await a.close();
    await vi.waitFor(() => expect(errors).toHaveLength(2));
    expect((errors[1] as Error).message).toMatch(/closed before the revoked event of key_\w+/);
  });
});
