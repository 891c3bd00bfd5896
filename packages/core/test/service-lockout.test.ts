import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ARGON2_CHANNEL } from '../src/hashing.js';
import { memoryStore } from '../src/memory-store.js';
import { service, wrongSecretFor } from './test-fixtures.js';

/** Sends fresh wrong secrets for `rawKey`'s lookup part, `width` at a time, until stopped. */
function flood(keys: ReturnType<typeof service>, rawKey: string, width = 8) {
  let stopped = false;
  let sent = 0;
  const lanes = Array.from({ length: width }, async () => {
    while (!stopped) {
      await keys.verify(wrongSecretFor(rawKey)).catch(() => {});
      sent++;
      await sleep(1);
    }
  });
  return {
    get sent() {
      return sent;
    },
    async stop() {
      stopped = true;
      await Promise.all(lanes);
    },
  };
}

const lockout = {
  maxFailures: 3,
  cooldownMs: 60_000,
  failureDelayMs: 0,
};

describe('key service: a lockout cannot shut the real key out', () => {
  it('while an attacker floods wrong secrets for its lookup part, a key this instance verified before is still accepted', async () => {
    const keys = service({
      cache: { ttlMs: 50 },
      verification: { ...lockout, probeIntervalMs: 60_000 },
    });
    const { rawKey } = await keys.create('acct_1', 'k');
    expect((await keys.verify(rawKey)).ok).toBe(true);
    await sleep(80); // out of the positive cache
    const attack = flood(keys, rawKey);
    await sleep(100);
    expect(await keys.verify(wrongSecretFor(rawKey))).toEqual({
      ok: false,
      reason: 'too_many_failures',
    });
    expect((await keys.verify(rawKey)).ok).toBe(true);
    await attack.stop();
  });

  it('an instance that never saw the key lets one attempt per probeIntervalMs through: the real key gets in within it, and the flood costs one argon2 run per interval', async () => {
    const store = memoryStore();
    const issuer = service({ store });
    const keys = service({ store, verification: { ...lockout, probeIntervalMs: 200 } });
    const { rawKey } = await issuer.create('acct_1', 'k');
    let verifies = 0;
    const count = (message: unknown) => {
      if ((message as { operation: string }).operation === 'verify') verifies++;
    };
    subscribe(ARGON2_CHANNEL, count);
    try {
      const attack = flood(keys, rawKey);
      await sleep(600);
      await attack.stop();
      // maxFailures, then at most one probe per 200 ms (and one more at the edges).
      expect(attack.sent).toBeGreaterThan(100);
      expect(verifies).toBeLessThanOrEqual(lockout.maxFailures + 4);
      // Still in the cooldown (60 s): the real key, tried every 20 ms, gets a probe.
      const started = performance.now();
      let accepted = false;
      while (!accepted && performance.now() - started < 1000) {
        accepted = (await keys.verify(rawKey)).ok;
        if (!accepted) await sleep(20);
      }
      expect(accepted).toBe(true);
      expect(performance.now() - started).toBeLessThan(200 + 100);
      // From now on this instance knows the key: it passes the lockout at once.
      const again = flood(keys, rawKey);
      await sleep(50);
      keys.invalidate((await issuer.list('acct_1'))[0]?.id ?? '');
      expect((await keys.verify(rawKey)).ok).toBe(true);
      await again.stop();
    } finally {
      unsubscribe(ARGON2_CHANNEL, count);
    }
  });
});
