import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type CreatedApiKey,
  createKeyService,
  type KeyService,
  type KeyStore,
  type LastUsedUpdate,
} from '@keyward/core';
import { kyselyStore, migrate } from '@keyward/kysely';
import type { RunningServer } from '@keyward/testing';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KeepAliveClient, keepAliveClient } from './support/keep-alive.js';
import { startServer } from './support/servers.js';
import { DATABASE_URL, postgresReachable } from './support/services.js';

/**
 * Issue 5, item 2: lastUsedAt is written behind, so store writes grow with active keys, not
 * with requests. 10,000 requests over 10 keys in 10 s, through real HTTP, on the Postgres
 * server, with the default flush interval (1000 ms).
 */

const postgres = await postgresReachable();

const GUARDED = '/v1/whoami';
const KEYS = 10;
const REQUESTS = 10_000;
const LOAD_MS = 10_000;
const IN_FLIGHT = 10;
/** The service's default, relied on rather than passed, so the default is what is tested. */
const FLUSH_INTERVAL_MS = 1000;
const SAMPLE_FROM_MS = 1_500;
const SAMPLE_EVERY_MS = 230;
/** Beyond one flush interval, the list may lag by the batch's own write and by timer
 * jitter on an event loop that also serves and sends 1000 requests a second. */
const WRITE_SLACK_MS = 250;

interface WriteLog {
  batches: number;
  entries: number;
  /** Batches that named one id twice: the writer should merge them. */
  duplicates: number;
}

/** The store, counting what reaches recordLastUsed: each call is one batch. */
function countingStore(store: KeyStore, log: WriteLog): KeyStore {
  return {
    ...store,
    recordLastUsed(updates: readonly LastUsedUpdate[]) {
      log.batches++;
      log.entries += updates.length;
      if (new Set(updates.map((u) => u.id)).size !== updates.length) log.duplicates++;
      return store.recordLastUsed(updates);
    },
  };
}

interface Use {
  /** Epoch ms when the request was sent and when its 200 arrived. The service stamps
   * lastUsedAt between the two. */
  sentAt: number;
  answeredAt: number;
}

describe.skipIf(!postgres)(
  'lastUsedAt under load (Postgres server, default flush interval)',
  () => {
    const table = `kw_lu_${randomBytes(5).toString('hex')}`;
    const owner = `lu-${randomBytes(5).toString('hex')}`;
    const log: WriteLog = { batches: 0, entries: 0, duplicates: 0 };
    let db: Kysely<Record<string, never>>;
    let serving: KeyService;
    let observing: KeyService;
    let servingServer: RunningServer | undefined;
    let observingServer: RunningServer | undefined;
    let http: KeepAliveClient;
    let keys: CreatedApiKey[];
    let admin: CreatedApiKey;

    beforeAll(async () => {
      db = new Kysely({
        dialect: new PostgresDialect({
          pool: new pg.Pool({ connectionString: DATABASE_URL, max: 6 }),
        }),
      });
      await migrate(db, { table });
      const store = kyselyStore(db, { table });
      // The instance under load, whose writes are counted...
      serving = createKeyService({ store: countingStore(store, log) });
      expect(serving.options.lastUsedFlushIntervalMs).toBe(FLUSH_INTERVAL_MS);
      // ...and another instance on the same table: its list shows only what reached the store.
      observing = createKeyService({ store });
      servingServer = await startServer.fastify({ service: serving, guardedPath: GUARDED });
      observingServer = await startServer.express({ service: observing, guardedPath: GUARDED });
      admin = await observing.create(owner, 'dashboard');
      keys = [];
      for (let i = 0; i < KEYS; i++) keys.push(await observing.create(owner, `key ${i}`));
      http = keepAliveClient(IN_FLIGHT);
    });

    afterAll(async () => {
      http?.close();
      await servingServer?.close();
      await observingServer?.close();
      await serving?.close();
      await observing?.close();
      if (db) {
        await db.schema.dropTable(table).ifExists().execute();
        await db.destroy();
      }
    });

    /** The list as another instance serves it: key id -> lastUsedAt in epoch ms (or null). */
    async function listed(): Promise<Map<string, number | null>> {
      const response = await http.send(observingServer?.url ?? '', {
        path: '/v1/api-keys',
        headers: { 'X-API-Key': admin.rawKey },
      });
      expect(response.status).toBe(200);
      const { data } = JSON.parse(response.text) as {
        data: Array<{ id: string; lastUsedAt: string | null }>;
      };
      return new Map(
        data.map((k) => [k.id, k.lastUsedAt === null ? null : Date.parse(k.lastUsedAt)]),
      );
    }

    it(`${REQUESTS} requests over ${KEYS} keys in ${LOAD_MS / 1000} s write at most ${KEYS} × (${LOAD_MS / 1000} s / flush interval) + ${KEYS} lastUsedAt values, and the list keeps up within one interval`, async () => {
      const url = servingServer?.url ?? '';
      const uses = new Map<string, Use[]>(keys.map((key) => [key.id, []]));
      const statuses = new Map<number, number>();
      let worstLag = 0;
      let samples = 0;

      const start = Date.now();
      // Request i is due at start + i × 0.999 ms and uses key i mod 10, so one worker per
      // key keeps the pace and the bound of 10 in flight at once. The last is due 10 ms
      // before the 10 s are up, so that on pace its answer lands within them.
      const pace = (LOAD_MS - 10) / REQUESTS;
      const workers = keys.map(async (key, w) => {
        for (let i = w; i < REQUESTS; i += KEYS) {
          const due = start + i * pace;
          const wait = due - Date.now();
          if (wait > 0) await sleep(wait);
          const sentAt = Date.now();
          const response = await http.send(url, {
            path: GUARDED,
            headers: { 'X-API-Key': key.rawKey },
          });
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          if (response.status === 200) uses.get(key.id)?.push({ sentAt, answeredAt: Date.now() });
        }
      });

      // While the load runs, every 230 ms from 1.5 s on, the list as another instance
      // serves it: no use may stay out of it for longer than one flush interval. 230 ms, not
      // a divisor of the interval, so the samples fall at every phase of the flush cycle and
      // the worst case is among them. A use is
      // certainly not in it when it was sent after the listed lastUsedAt; its age is at least
      // the time since its answer.
      const sampler = (async () => {
        for (let at = SAMPLE_FROM_MS; at < LOAD_MS; at += SAMPLE_EVERY_MS) {
          await sleep(start + at - Date.now());
          const listedAt = Date.now();
          const answered = new Map([...uses].map(([id, list]) => [id, list.length]));
          const list = await listed();
          for (const key of keys) {
            const keyUses = uses.get(key.id) ?? [];
            const stored = list.get(key.id) ?? Number.NEGATIVE_INFINITY;
            const oldestMissing = keyUses
              .slice(0, answered.get(key.id))
              .find((use) => use.sentAt > stored);
            if (oldestMissing) worstLag = Math.max(worstLag, listedAt - oldestMissing.answeredAt);
          }
          samples++;
        }
      })();

      await Promise.all([...workers, sampler]);
      // The span of the uses: from the first request sent to the last answer.
      const loadMs = Math.max(...[...uses.values()].map((u) => u.at(-1)?.answeredAt ?? 0)) - start;
      // What is still pending is written by the next tick; wait for it rather than flushing
      // by hand, so the count is what the timer alone writes.
      const drainDeadline = Date.now() + 3 * FLUSH_INTERVAL_MS;
      while (serving.stats().pendingLastUsed > 0 && Date.now() < drainDeadline) await sleep(20);
      const drainedMs = Date.now() - start;

      // Each key's final lastUsedAt is the time of its last request, to the millisecond.
      const final = await listed();
      for (const key of keys) {
        const use = uses.get(key.id)?.at(-1);
        expect(final.get(key.id)).toBeGreaterThanOrEqual(use?.sentAt ?? Number.NaN);
        expect(final.get(key.id)).toBeLessThanOrEqual(use?.answeredAt ?? Number.NaN);
      }

      // At most floor(span / interval) + 1 ticks fall inside the span of the uses, and one
      // more writes the rest: for a span under 10 s, exactly the issue's
      // 10 × (10 s / 1 s) + 10. A machine too busy to keep the pace stretches the span, and
      // the bound with it, by 10 values per extra second.
      const batchBound = Math.floor(loadMs / FLUSH_INTERVAL_MS) + 2;
      console.info(
        `[last-used] ${REQUESTS} requests over ${KEYS} keys in ${loadMs} ms (all written after ${drainedMs} ms): ` +
          `${log.entries} lastUsedAt values in ${log.batches} batches (bound ${KEYS * batchBound} in ${batchBound}); ` +
          `longest a use stayed out of the list, over ${samples} samples: ${worstLag} ms`,
      );
      expect(Object.fromEntries(statuses)).toEqual({ 200: REQUESTS });
      expect(serving.stats().pendingLastUsed).toBe(0);
      expect(log.duplicates).toBe(0);
      expect(log.batches).toBeLessThanOrEqual(batchBound);
      expect(log.entries).toBeLessThanOrEqual(KEYS * batchBound);
      expect(samples).toBe(Math.ceil((LOAD_MS - SAMPLE_FROM_MS) / SAMPLE_EVERY_MS));
      expect(worstLag).toBeLessThanOrEqual(FLUSH_INTERVAL_MS + WRITE_SLACK_MS);
      // A slower pace than asked would make the bound loose; it was kept within 10 %.
      expect(loadMs).toBeLessThan(LOAD_MS * 1.1);
    }, 30_000);
  },
);
