import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { CoarseClock } from './coarse-clock.js';

describe('CoarseClock', () => {
  it('reads each clock once per resolution and again after it', async () => {
    let wallReads = 0;
    const clock = new CoarseClock(() => 1_000 + wallReads++, 5);
    const first = { monotonic: clock.monotonic(), wall: clock.wall() };
    expect({ monotonic: clock.monotonic(), wall: clock.wall() }).toEqual(first);
    expect(wallReads).toBe(1);
    await sleep(20);
    expect(clock.monotonic()).toBeGreaterThan(first.monotonic);
    expect(clock.wall()).toBe(1_001);
    expect(wallReads).toBe(2);
  });
});
