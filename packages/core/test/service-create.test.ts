import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { ARGON2_CHANNEL, type Argon2Event, OWASP_ARGON2 } from '../src/hashing.js';
import { service } from './test-fixtures.js';

/** Every argon2 run announced while `work` runs, with when it started and ended. */
async function argon2Runs<T>(work: () => Promise<T>) {
  const runs: Array<{ operation: Argon2Event['operation']; start: number; end: number }> = [];
  const listener = (message: unknown) => {
    const { operation, durationMs } = message as Argon2Event;
    const end = performance.now();
    runs.push({ operation, start: end - durationMs, end });
  };
  subscribe(ARGON2_CHANNEL, listener);
  try {
    const result = await work();
    return { result, runs };
  } finally {
    unsubscribe(ARGON2_CHANNEL, listener);
  }
}

/** The most runs that overlapped at any one time. */
function mostAtOnce(runs: ReadonlyArray<{ start: number; end: number }>): number {
  const edges = runs.flatMap((r) => [
    { at: r.start, d: 1 },
    { at: r.end, d: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of edges) {
    now += e.d;
    most = Math.max(most, now);
  }
  return most;
}

describe('key service: create and the shared argon2 slots', () => {
  it('an account at its cap: 20 concurrent creates all answer key_limit_reached, and no argon2 hash runs', async () => {
    const keys = service({ maxKeysPerOwner: 2 });
    await keys.create('acct_1', 'a');
    await keys.create('acct_1', 'b');
    const { result, runs } = await argon2Runs(() =>
      Promise.allSettled(Array.from({ length: 20 }, (_, i) => keys.create('acct_1', `c${i}`))),
    );
    for (const settled of result) {
      expect(settled).toMatchObject({ status: 'rejected', reason: { code: 'key_limit_reached' } });
    }
    expect(runs.filter((r) => r.operation === 'hash')).toEqual([]);
  });

  it('concurrent creates just below the cap: exactly the cap is reached, the rest are refused before hashing', async () => {
    const keys = service({ maxKeysPerOwner: 3 });
    const { result, runs } = await argon2Runs(() =>
      Promise.allSettled(Array.from({ length: 10 }, (_, i) => keys.create('acct_1', `k${i}`))),
    );
    expect(result.filter((s) => s.status === 'fulfilled')).toHaveLength(3);
    expect(runs.filter((r) => r.operation === 'hash')).toHaveLength(3);
    expect(await keys.list('acct_1')).toHaveLength(3);
  });

  it('one account’s 10 concurrent creates hash one at a time', async () => {
    const keys = service({ argon2: OWASP_ARGON2, verification: { maxConcurrent: 4 } });
    const { result, runs } = await argon2Runs(() =>
      Promise.all(Array.from({ length: 10 }, (_, i) => keys.create('acct_1', `k${i}`))),
    );
    expect(result).toHaveLength(10);
    const hashes = runs.filter((r) => r.operation === 'hash');
    expect(hashes).toHaveLength(10);
    expect(mostAtOnce(hashes)).toBe(1);
  });

  it('a burst of creates does not make another tenant’s cold key verification answer service_unavailable', async () => {
    const keys = service({
      argon2: OWASP_ARGON2,
      verification: { maxConcurrent: 1, maxQueue: 1 },
    });
    const cold = await keys.create('acct_other', 'cold');
    const burst = [
      ...Array.from({ length: 8 }, (_, i) => keys.create('acct_busy', `k${i}`)),
      ...Array.from({ length: 8 }, (_, i) => keys.create(`acct_many_${i}`, 'k')),
    ];
    const burstSettled = Promise.allSettled(burst);
    await expect(keys.verify(cold.rawKey)).resolves.toMatchObject({ ok: true });
    const settled = await burstSettled;
    // The busy account's creates wait their turn and all succeed.
    expect(settled.slice(0, 8).every((s) => s.status === 'fulfilled')).toBe(true);
  });
});
