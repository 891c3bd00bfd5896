import { randomUUID } from 'node:crypto';
import { type InvalidationEvent, serializeInvalidationEvent } from '@keyward/core';
import { describe, expect, it, vi } from 'vitest';
import { redisStreamBus } from '../src/redis-stream-bus.js';
import type { RedisClient } from '../src/scripts.js';

/** The log bus over a Redis Stream (redisStreamBus), on a single server or a Cluster. The
 * fault tests with two key services are in test/revocation-bound.test.ts. */
export function describeStreamBus(label: string, connect: () => Promise<RedisClient>): void {
  describe(`${label}: invalidation log bus (stream)`, () => {
    const fresh = async () => {
      const key = `kwtest:${randomUUID()}`;
      const [publisher, subscriber] = await Promise.all([connect(), connect()]);
      const cleanup = async () => {
        await publisher.del(`{${key}}:log`, `{${key}}:seq`);
      };
      return { key, publisher, subscriber, cleanup };
    };
    const collect = () => {
      const events: InvalidationEvent[] = [];
      return { events, listener: (event: InvalidationEvent) => events.push(event) };
    };

    it('delivers an appended event to every reader, with its publication time, and reports being current', async () => {
      const { key, publisher, subscriber, cleanup } = await fresh();
      const other = await connect();
      const errors: unknown[] = [];
      const onError = (error: unknown) => errors.push(error);
      const a = redisStreamBus({ publisher, subscriber, key, onError });
      const b = redisStreamBus({ publisher: other, subscriber: await connect(), key, onError });
      expect(b.vouchesForView).toBe(true);
      const got = collect();
      let caughtUp = 0;
      const stop = await b.subscribe(got.listener, { onCaughtUp: (asOf) => (caughtUp = asOf) });
      await vi.waitFor(() => expect(caughtUp).toBeGreaterThan(0));
      const before = performance.now();
      await a.publish({ type: 'revoked', keyId: 'key_one', ownerId: 'acct_1' });
      await vi.waitFor(() =>
        expect(got.events).toEqual([
          { type: 'revoked', keyId: 'key_one', ownerId: 'acct_1', publishedAt: expect.any(Number) },
        ]),
      );
      await vi.waitFor(() => expect(caughtUp).toBeGreaterThan(before));
      await stop();
      expect(errors).toEqual([]);
      await cleanup();
    });

    it('a reader whose position the stream no longer holds resyncs, says so, and reads what remains', async () => {
      const { key, publisher, subscriber, cleanup } = await fresh();
      const errors: unknown[] = [];
      const bus = redisStreamBus({
        publisher,
        subscriber,
        key,
        onError: (error) => errors.push(error),
      });
      const got = collect();
      let resyncs = 0;
      let caughtUp = 0;
      const stop = await bus.subscribe(got.listener, {
        onResync: () => resyncs++,
        onCaughtUp: () => caughtUp++,
      });
      await vi.waitFor(() => expect(caughtUp).toBeGreaterThan(0));
      // Three appends as the bus makes them, and a trim of the first two, in one step: the
      // reader sees them only together.
      const payloads = ['key_1', 'key_2', 'key_3'].map((keyId) =>
        serializeInvalidationEvent({ type: 'revoked', keyId }),
      );
      await publisher.eval(
        `for i = 1, #ARGV do
           local n = redis.call('INCR', KEYS[2])
           redis.call('XADD', KEYS[1], '*', 'n', n, 'e', ARGV[i])
         end
         redis.call('XTRIM', KEYS[1], 'MAXLEN', 1)`,
        2,
        `{${key}}:log`,
        `{${key}}:seq`,
        ...payloads,
      );
      await vi.waitFor(() => expect(resyncs).toBe(1));
      expect(got.events.map((event) => event.keyId)).toEqual(['key_3']);
      expect(errors.map(String)).toEqual([
        expect.stringMatching(/no longer holds every event after this instance's position/),
      ]);
      await stop();
      await cleanup();
    });

    it('a reader that missed nothing does not resync after the stream is trimmed behind it', async () => {
      const { key, publisher, subscriber, cleanup } = await fresh();
      const bus = redisStreamBus({ publisher, subscriber, key, onError: () => {} });
      const got = collect();
      let resyncs = 0;
      const stop = await bus.subscribe(got.listener, { onResync: () => resyncs++ });
      for (const keyId of ['key_1', 'key_2', 'key_3'])
        await bus.publish({ type: 'revoked', keyId });
      await vi.waitFor(() => expect(got.events).toHaveLength(3));
      await publisher.xtrim(`{${key}}:log`, 'MAXLEN', 0);
      await bus.publish({ type: 'revoked', keyId: 'key_4' });
      await vi.waitFor(() => expect(got.events).toHaveLength(4));
      expect(resyncs).toBe(0);
      await stop();
      await cleanup();
    });

    it('rejects a key with braces (it makes its own hash tag)', () => {
      expect(() =>
        redisStreamBus({
          publisher: {} as RedisClient,
          subscriber: {} as RedisClient,
          key: '{x}',
          onError: () => {},
        }),
      ).toThrow(TypeError);
    });
  });
}
