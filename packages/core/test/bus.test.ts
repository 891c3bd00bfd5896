import { describe, expect, it } from 'vitest';
import {
  busRetryDelay,
  type InvalidationEvent,
  parseInvalidationEvent,
  serializeInvalidationEvent,
} from '../src/bus.js';

describe('busRetryDelay', () => {
  it('doubles from 100 ms up to 30 s, each delay jittered within the upper half', () => {
    const ceilings = [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000];
    for (const [attempt, ceiling] of ceilings.entries()) {
      for (let i = 0; i < 50; i++) {
        const delay = busRetryDelay(attempt);
        expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
        expect(delay).toBeLessThanOrEqual(ceiling);
      }
    }
    expect(busRetryDelay(10_000)).toBeLessThanOrEqual(30_000);
    const spread = new Set(Array.from({ length: 20 }, () => busRetryDelay(3)));
    expect(spread.size).toBeGreaterThan(1);
  });
});

describe('invalidation events on the wire', () => {
  it('carry type, keyId, ownerId when given and the publication time, and nothing else', () => {
    const sent = serializeInvalidationEvent({
      type: 'revoked',
      keyId: 'key_1',
      ownerId: 'acct_1',
      publishedAt: 1234,
      extra: 'dropped',
    } as InvalidationEvent);
    expect(sent).toBe('{"type":"revoked","keyId":"key_1","ownerId":"acct_1","at":1234}');
    expect(parseInvalidationEvent(sent)).toEqual({
      type: 'revoked',
      keyId: 'key_1',
      ownerId: 'acct_1',
      publishedAt: 1234,
    });
    const now = JSON.parse(serializeInvalidationEvent({ type: 'rolled', keyId: 'key_2' }));
    expect(now.at).toBeGreaterThan(Date.now() - 5000);
    expect(parseInvalidationEvent('{"type":"revoked","keyId":"key_1"}')).toEqual({
      type: 'revoked',
      keyId: 'key_1',
    });
    expect(parseInvalidationEvent('{"type":"revoked","keyId":"key_1","ownerId":7}')).toBeNull();
  });

  it('take types added later (an older instance still drops the key), but only [a-z-] ones', () => {
    expect(parseInvalidationEvent('{"type":"quarantined","keyId":"key_1"}')).toEqual({
      type: 'quarantined',
      keyId: 'key_1',
    });
    for (const type of ['', 'Revoked', 'x'.repeat(33), 'a b', 7]) {
      expect(parseInvalidationEvent(JSON.stringify({ type, keyId: 'key_1' }))).toBeNull();
    }
  });
});
