import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { ARGON2_CHANNEL, type Argon2Event, hashKey, verifyKeyHash } from '../src/hashing.js';

const RAW_KEY = 'rep_hashing_test_key';

describe(`argon2 on diagnostics_channel "${ARGON2_CHANNEL}"`, () => {
  const events: unknown[] = [];
  const listener = (event: unknown) => events.push(event);
  afterEach(() => {
    unsubscribe(ARGON2_CHANNEL, listener);
    events.length = 0;
  });

  it('announces each hash and verify with its duration, and nothing else', async () => {
    subscribe(ARGON2_CHANNEL, listener);
    const phc = await hashKey(RAW_KEY, CHEAP_ARGON2);
    expect(await verifyKeyHash(phc, RAW_KEY)).toBe(true);
    expect(await verifyKeyHash(phc, `${RAW_KEY}x`)).toBe(false);
    expect(events.map((e) => (e as Argon2Event).operation)).toEqual(['hash', 'verify', 'verify']);
    for (const event of events) {
      // Only these two fields: no raw key, no hash.
      expect(Object.keys(event as object).sort()).toEqual(['durationMs', 'operation']);
      expect((event as Argon2Event).durationMs).toBeGreaterThan(0);
    }
  });

  it('announces a verify against a malformed hash, which still answers false', async () => {
    subscribe(ARGON2_CHANNEL, listener);
    expect(await verifyKeyHash('$argon2id$not-a-hash', RAW_KEY)).toBe(false);
    expect(events).toEqual([{ operation: 'verify', durationMs: expect.any(Number) }]);
  });
});
