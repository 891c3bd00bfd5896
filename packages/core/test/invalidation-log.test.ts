import { describe, expect, it } from 'vitest';
import { InvalidationLog } from '../src/invalidation-log.js';

describe('invalidation log', () => {
  it('answers per key: only the key invalidated after a start counts as invalidated', () => {
    const log = new InvalidationLog(10);
    const start = log.seq;
    log.record('key_a');
    expect(log.since('key_a', start)).toBe(true);
    expect(log.since('key_b', start)).toBe(false);
    expect(log.since('key_a', log.seq)).toBe(false);
  });

  it('past its bound, a key pushed out counts as invalidated for verifications that started before it went', () => {
    const log = new InvalidationLog(2);
    const early = log.seq;
    log.record('key_a');
    const middle = log.seq;
    log.record('key_b');
    log.record('key_c'); // key_a goes
    expect(log.size).toBe(2);
    expect(log.since('key_a', early)).toBe(true);
    expect(log.since('key_z', early)).toBe(true); // conservative: never seen, but started below the floor
    expect(log.since('key_z', middle)).toBe(false);
    expect(log.since('key_z', log.seq)).toBe(false);
  });

  it('recordAll() counts every key as invalidated for verifications started before it', () => {
    const log = new InvalidationLog(10);
    const before = log.seq;
    log.record('key_a');
    log.recordAll();
    expect(log.since('key_a', before)).toBe(true);
    expect(log.since('key_never_seen', before)).toBe(true);
    expect(log.since('key_never_seen', log.seq)).toBe(false);
    expect(log.size).toBe(0);
  });
});
