import { describe, expect, it } from 'vitest';
import { Semaphore } from '../src/semaphore.js';

/** A task that runs until `finish()` is called, noting when it started. */
function task(log: string[], name: string) {
  let finish = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  const run = async () => {
    log.push(name);
    await done;
  };
  return { run, finish: () => finish() };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('semaphore: low-priority work', () => {
  it('holds at most maxLowConcurrent slots, and a freed slot goes to waiting high work first', async () => {
    const slots = new Semaphore(2, 10, 1);
    const log: string[] = [];
    const low1 = task(log, 'low1');
    const low2 = task(log, 'low2');
    const high1 = task(log, 'high1');
    const high2 = task(log, 'high2');
    const runs = [slots.runLow(low1.run), slots.runLow(low2.run), slots.run(high1.run)];
    await tick();
    expect(log).toEqual(['low1', 'high1']); // low2 waits: one low slot
    runs.push(slots.run(high2.run));
    low1.finish();
    await tick();
    expect(log).toEqual(['low1', 'high1', 'high2']); // high2 came later, went first
    high1.finish();
    await tick();
    expect(log).toEqual(['low1', 'high1', 'high2', 'low2']);
    high2.finish();
    low2.finish();
    await Promise.all(runs);
  });

  it('low work waits in a queue of its own: a full one refuses low work, not high work', async () => {
    const slots = new Semaphore(1, 1, 1);
    const log: string[] = [];
    const first = task(log, 'first');
    const running = slots.runLow(first.run);
    const low = task(log, 'low');
    const queuedLow = slots.runLow(low.run);
    await expect(slots.runLow(async () => {})).rejects.toMatchObject({
      code: 'service_unavailable',
    });
    const queuedHigh = slots.run(async () => {});
    first.finish();
    await Promise.all([running, queuedHigh]);
    expect(slots.pending).toBe(0);
    expect(log).toEqual(['first', 'low']);
    low.finish();
    await queuedLow;
  });
});
