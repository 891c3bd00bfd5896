/**
 * The log bus and the staleness bound in one process (docs/design.md, "Invalidation log"):
 * a log kept in memory, which a test can cut off (its reads fail) or trim, shared by two
 * services on one memory store. The stores' own logs run the same driver against real
 * servers in test/revocation-bound.test.ts and the stores' suites.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import {
  INVALIDATION_CHANNEL,
  type InvalidationDiagnostic,
  type LogBusSource,
  logBus,
  memoryBus,
} from '../src/bus.js';
import { ARGON2_CHANNEL } from '../src/hashing.js';
import { memoryStore } from '../src/memory-store.js';
import type { KeyStore } from '../src/store.js';
import { service } from './test-fixtures.js';

/** A log in memory: entries numbered from 1, `trim` drops the oldest, `cut` makes every
 * read of one reader fail until `mend`. */
function memoryLog() {
  let entries: { seq: number; payload: string }[] = [];
  let next = 1;
  return {
    trim(keep: number) {
      entries = entries.slice(-keep);
    },
    source(reader: { cut: boolean }): LogBusSource {
      const fail = () => {
        if (reader.cut) throw new Error('cut off');
      };
      return {
        async append(payload) {
          entries.push({ seq: next++, payload });
        },
        async head() {
          fail();
          return String(next - 1);
        },
        async read(position) {
          fail();
          const at = Number(position);
          const after = entries.filter((e) => e.seq > at);
          const lo = entries[0]?.seq;
          return {
            entries: after.map((e) => ({ position: String(e.seq), payload: e.payload })),
            position: String(after.at(-1)?.seq ?? at),
            lost: lo !== undefined && lo > at + 1,
            more: false,
          };
        },
        async wait(_position, waitMs) {
          await sleep(waitMs);
          return undefined;
        },
      };
    },
  };
}

function countingStore(shared: KeyStore, down: { value: boolean }) {
  let reads = 0;
  const store: KeyStore = {
    ...shared,
    async findByLookup(lookup) {
      reads++;
      if (down.value) throw new Error('store down');
      return shared.findByLookup(lookup);
    },
  };
  return { store, reads: () => reads };
}

/** What the key services of this process report on the invalidation diagnostics channel,
 * until `stop()`. */
function watchDiagnostics() {
  const seen: InvalidationDiagnostic[] = [];
  const listener = (message: unknown) => seen.push(message as InvalidationDiagnostic);
  subscribe(INVALIDATION_CHANNEL, listener);
  return { seen, stop: () => unsubscribe(INVALIDATION_CHANNEL, listener) };
}

const MAX_STALENESS_MS = 200;
const HEARTBEAT_MS = 20;

async function twoInstances() {
  const log = memoryLog();
  const shared = memoryStore();
  const storeDown = { value: false };
  const counted = countingStore(shared, storeDown);
  const aErrors: unknown[] = [];
  const bErrors: unknown[] = [];
  const bLink = { cut: false };
  const a = service({
    store: shared,
    bus: logBus(log.source({ cut: false }), {
      name: 'a',
      heartbeatMs: HEARTBEAT_MS,
      onError: (e) => aErrors.push(e),
    }),
    maxStalenessMs: MAX_STALENESS_MS,
  });
  const b = service({
    store: counted.store,
    bus: logBus(log.source(bLink), {
      name: 'b',
      heartbeatMs: HEARTBEAT_MS,
      onError: (e) => bErrors.push(e),
    }),
    maxStalenessMs: MAX_STALENESS_MS,
  });
  await Promise.all([a.ready(), b.ready()]);
  await vi.waitFor(() => expect(b.stats().invalidation.viewAgeMs).toBeLessThan(MAX_STALENESS_MS));
  return { log, a, b, bLink, bErrors, storeDown, bReads: counted.reads };
}

describe('logBus', () => {
  it('a maxStalenessMs under two heartbeats of the bus is refused when the service is made', () => {
    const bus = (heartbeatMs: number) =>
      logBus(memoryLog().source({ cut: false }), { name: 'log', heartbeatMs, onError: () => {} });
    expect(() => service({ bus: bus(1000), maxStalenessMs: 1999 })).toThrow(
      /maxStalenessMs \(1999\) must be at least twice the bus's heartbeatMs \(1000\)/,
    );
    // The defaults (1 s and 5 s) and anything from two heartbeats up are fine.
    expect(() => service({ bus: bus(1000) })).not.toThrow();
    expect(() => service({ bus: bus(1000), maxStalenessMs: 2000 })).not.toThrow();
  });

  it('an expiry brought forward goes out as expired-early on a log bus, as updated on pub/sub', async () => {
    const { a, b } = await twoInstances();
    const key = await a.create('acct_1', 'k');
    expect(await b.verify(key.rawKey)).toMatchObject({ ok: true });
    const { seen, stop } = watchDiagnostics();
    try {
      await a.update('acct_1', key.id, { expiresAt: new Date(Date.now() + 60_000) });
      await vi.waitFor(() => expect(b.verifyCached(key.rawKey)).toBeUndefined());
      await a.update('acct_1', key.id, { name: 'renamed' });
      // Each event is applied twice in this process: by A (its own log) and by B.
      await vi.waitFor(() => expect(seen).toHaveLength(4));
    } finally {
      stop();
    }
    const applied = seen.map((message) => (message.kind === 'applied' ? message.type : ''));
    expect(applied.sort()).toEqual(['expired-early', 'expired-early', 'updated', 'updated']);

    // A pub/sub bus may be shared with instances of earlier versions: 'updated' there.
    const bus = memoryBus();
    const types: string[] = [];
    await bus.subscribe((event) => types.push(event.type));
    const c = service({ bus });
    const other = await c.create('acct_1', 'k');
    await c.update('acct_1', other.id, { expiresAt: new Date(Date.now() + 60_000) });
    expect(types).toEqual(['updated']);
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  it('delivers what A publishes to B, with its lag, and keeps B’s view current', async () => {
    const { a, b } = await twoInstances();
    const key = await a.create('acct_1', 'k');
    expect(await b.verify(key.rawKey)).toMatchObject({ ok: true });
    const { seen, stop } = watchDiagnostics();
    try {
      await a.revoke('acct_1', key.id);
      await vi.waitFor(() => expect(b.verifyCached(key.rawKey)).toBeUndefined());
    } finally {
      stop();
    }
    expect(seen).toContainEqual({
      kind: 'applied',
      type: 'revoked',
      keyId: key.id,
      lagMs: expect.any(Number),
    });
    const stats = b.stats().invalidation;
    expect(stats).toMatchObject({ applied: 1, resyncs: 0 });
    expect(stats.lagP50Ms).toBeGreaterThanOrEqual(0);
    expect(stats.lagP99Ms).toBeLessThan(1000);
    expect(stats.viewAgeMs).toBeLessThan(MAX_STALENESS_MS);
  });

  it('replays what was published while B could not read, once it can again', async () => {
    const { a, b, bLink, bErrors } = await twoInstances();
    const revoked = await a.create('acct_1', 'revoked');
    const kept = await a.create('acct_1', 'kept');
    for (const key of [revoked, kept])
      expect(await b.verify(key.rawKey)).toMatchObject({ ok: true });
    bLink.cut = true;
    await a.revoke('acct_1', revoked.id);
    await sleep(HEARTBEAT_MS * 3);
    bLink.cut = false;
    await vi.waitFor(() => expect(b.verifyCached(revoked.rawKey)).toBeUndefined());
    // Replayed, not resynced: the other key stays cached.
    expect(b.verifyCached(kept.rawKey)).toBeDefined();
    expect(b.stats().invalidation.resyncs).toBe(0);
    // The first failed read of the run was reported, once.
    expect(bErrors.length).toBe(1);
  });

  it('past maxStalenessMs, a cached key is checked in the store: revoked → refused, kept → one read each, no argon2', async () => {
    const { a, b, bLink, bReads } = await twoInstances();
    const revoked = await a.create('acct_1', 'revoked');
    const kept = await a.create('acct_1', 'kept');
    for (const key of [revoked, kept])
      expect(await b.verify(key.rawKey)).toMatchObject({ ok: true });
    bLink.cut = true;
    await a.revoke('acct_1', revoked.id);
    // Within the bound B still trusts its cache (it cannot know yet).
    expect(b.verifyCached(kept.rawKey)).toBeDefined();
    await sleep(MAX_STALENESS_MS + 20);
    expect(b.stats().invalidation.viewAgeMs).toBeGreaterThan(MAX_STALENESS_MS);
    // Stale: no synchronous hit, and each verify asks the store.
    expect(b.verifyCached(kept.rawKey)).toBeUndefined();
    const before = bReads();
    expect(await b.verify(revoked.rawKey)).toEqual({ ok: false, reason: 'unknown_key' });
    const readsForRevoked = bReads() - before;
    let argon2Runs = 0;
    const onArgon2 = () => argon2Runs++;
    subscribe(ARGON2_CHANNEL, onArgon2);
    try {
      expect(await b.verify(kept.rawKey)).toMatchObject({ ok: true, key: { id: kept.id } });
      expect(bReads() - before - readsForRevoked).toBe(1);
      // Still stale: the next hit asks again.
      expect(await b.verify(kept.rawKey)).toMatchObject({ ok: true });
      expect(bReads() - before - readsForRevoked).toBe(2);
    } finally {
      unsubscribe(ARGON2_CHANNEL, onArgon2);
    }
    expect(argon2Runs).toBe(0);
    // Back: the view is current and hits are served from memory again.
    bLink.cut = false;
    await vi.waitFor(() => expect(b.verifyCached(kept.rawKey)).toBeDefined());
  });

  it('stale and the store down too: 503 for a cached key, never a stale accept', async () => {
    const { a, b, bLink, storeDown } = await twoInstances();
    const key = await a.create('acct_1', 'k');
    expect(await b.verify(key.rawKey)).toMatchObject({ ok: true });
    bLink.cut = true;
    storeDown.value = true;
    await sleep(MAX_STALENESS_MS + 20);
    await expect(b.verify(key.rawKey)).rejects.toMatchObject({ code: 'service_unavailable' });
    storeDown.value = false;
    bLink.cut = false;
    await vi.waitFor(() => expect(b.verifyCached(key.rawKey)).toBeDefined());
  });

  it('a log trimmed past B’s position empties B’s cache and says so; no revoked key is accepted', async () => {
    const { log, a, b, bLink, bErrors } = await twoInstances();
    const revoked = await a.create('acct_1', 'revoked');
    const kept = await a.create('acct_1', 'kept');
    for (const key of [revoked, kept])
      expect(await b.verify(key.rawKey)).toMatchObject({ ok: true });
    bLink.cut = true;
    await a.revoke('acct_1', revoked.id);
    for (let i = 0; i < 5; i++) await a.update('acct_1', kept.id, { name: `n${i}` });
    log.trim(2);
    bLink.cut = false;
    await vi.waitFor(() => expect(b.stats().invalidation.resyncs).toBe(1));
    expect(b.stats().cachedKeys).toBe(0);
    expect(bErrors.map(String)).toContainEqual(
      expect.stringMatching(/no longer holds every event/),
    );
    expect(await b.verify(revoked.rawKey)).toEqual({ ok: false, reason: 'unknown_key' });
    expect(await b.verify(kept.rawKey)).toMatchObject({ ok: true, key: { name: 'n4' } });
  });

  it('a bus that does not vouch for its view (pub/sub) leaves the cache to its TTL', async () => {
    const keys = service({ maxStalenessMs: 1 });
    const key = await keys.create('acct_1', 'k');
    expect(await keys.verify(key.rawKey)).toMatchObject({ ok: true });
    await sleep(5);
    expect(keys.verifyCached(key.rawKey)).toBeDefined();
    expect(keys.stats().invalidation.viewAgeMs).toBeNull();
  });
});
