import { randomUUID } from 'node:crypto';
import type { InvalidationEvent, KeyStore, StoredKey } from '@keyward/core';
import { makeStoredKey } from '@keyward/testing';
import type { Command, Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { deleteNamespace, namespaceKeys } from '../../../test/support/redis-dump.js';
import { redisBus } from '../src/redis-bus.js';
import { redisStore } from '../src/redis-store.js';
import type { RedisClient } from '../src/scripts.js';

/** Helpers the server and the cluster test files share. */

/** A namespace no other run uses, so suites can share the server and clean up exactly
 * what they wrote. */
export function randomNamespace(): string {
  return `kwtest-${randomUUID().slice(0, 8)}`;
}

/** A key's record hash as the first versions of the store wrote it: the fields that
 * existed before expiry, scopes, metadata and createdBy. */
export function v1Record(key: StoredKey): Record<string, string> {
  return {
    id: key.id,
    ownerId: key.ownerId,
    name: key.name,
    lookup: key.lookup,
    hash: key.hash,
    keyPrefix: key.keyPrefix,
    keySuffix: key.keySuffix,
    createdAt: String(key.createdAt.getTime()),
  };
}

/** Runs `test` on a store in a namespace of its own, on a new connection, and deletes the
 * namespace afterwards whatever happens. */
export async function onFreshStore<Client extends RedisClient>(
  connect: () => Promise<Client>,
  test: (fresh: {
    client: Client;
    namespace: string;
    store: ReturnType<typeof redisStore>;
  }) => Promise<void>,
): Promise<void> {
  const client = await connect();
  const namespace = randomNamespace();
  try {
    await test({ client, namespace, store: redisStore(client, { namespace }) });
  } finally {
    await deleteNamespace(client, namespace);
  }
}

/** The names of the commands a client sends while `action` runs. Wraps the one method
 * every command goes through, pipelined ones included. */
export async function countCommands(
  client: RedisClient,
  action: () => Promise<unknown>,
): Promise<string[]> {
  const sent: string[] = [];
  const target = client as unknown as {
    sendCommand(command: Command, ...rest: unknown[]): unknown;
  };
  const original = target.sendCommand;
  target.sendCommand = function (this: unknown, command: Command, ...rest: unknown[]) {
    sent.push(command.name);
    return original.call(this, command, ...rest);
  };
  try {
    await action();
  } finally {
    target.sendCommand = original;
  }
  return sent;
}

/** How many times a single-server client writes to its socket while `action` runs. One
 * write followed by waiting for the replies is one round trip. */
export async function countSocketWrites(
  client: Redis,
  action: () => Promise<unknown>,
): Promise<number> {
  const socket = client.stream;
  const original = socket.write;
  let writes = 0;
  socket.write = function (this: typeof socket, ...args: Parameters<typeof original>) {
    writes++;
    return original.apply(this, args);
  } as typeof original;
  try {
    await action();
  } finally {
    socket.write = original;
  }
  return writes;
}

/**
 * Create, cap refusal, collision, update, roll (done, refused, colliding), lastUsedAt,
 * delete and deleteTree, over and over, and then not one key of the namespace may remain.
 */
export function describeNoOrphans(label: string, connect: () => Promise<RedisClient>): void {
  describe(`${label}: no orphan keys`, () => {
    it('leaves no key behind after create/refuse/collide/use/delete cycles', async () => {
      const client = await connect();
      const namespace = randomNamespace();
      const store: KeyStore = redisStore(client, { namespace });
      const cap = { maxKeysPerOwner: 2 };
      try {
        for (let cycle = 0; cycle < 5; cycle++) {
          const ownerId = `owner_${randomUUID()}`;
          const [a, b, c] = await Promise.all([1, 2, 3].map(() => makeStoredKey({ ownerId })));
          if (!a || !b || !c) throw new Error('unreachable');
          expect(await store.insert(a, cap)).toEqual({ ok: true });
          expect(await store.insert(b, cap)).toEqual({ ok: true });
          expect(await store.insert(c, cap)).toEqual({ ok: false, reason: 'limit_reached' });
          const sameId = await makeStoredKey({ id: a.id });
          await expect(store.insert(sameId, cap)).rejects.toMatchObject({ field: 'id' });
          const sameLookup = await makeStoredKey({ lookup: b.lookup });
          await expect(store.insert(sameLookup, cap)).rejects.toMatchObject({ field: 'lookup' });
          await store.update(ownerId, a.id, { name: 'renamed', metadata: { x: 1 } });
          const roll = (next: StoredKey, maxKeysPerOwner: number) =>
            store.roll(ownerId, a.id, next, {
              previousExpiresAt: new Date(Date.now() + 60_000),
              now: new Date(),
              maxKeysPerOwner,
            });
          const [rolled, refused] = await Promise.all(
            [1, 2].map(() => makeStoredKey({ ownerId, createdBy: a.id })),
          );
          if (!rolled || !refused) throw new Error('unreachable');
          await expect(roll(refused, 2)).resolves.toEqual({ ok: false, reason: 'limit_reached' });
          await expect(roll({ ...refused, lookup: b.lookup }, 5)).rejects.toMatchObject({
            field: 'lookup',
          });
          expect((await roll(rolled, 3)).ok).toBe(true);
          expect(await store.deleteTree(ownerId, rolled.id)).toEqual([rolled.id]);
          await store.recordLastUsed([
            { id: a.id, lastUsedAt: new Date() },
            { id: c.id, lastUsedAt: new Date() },
          ]);
          expect(await store.delete(ownerId, a.id)).toBe(true);
          expect(await store.delete(ownerId, b.id)).toBe(true);
          await store.recordLastUsed([
            { id: a.id, lastUsedAt: new Date() },
            { id: b.id, lastUsedAt: new Date() },
          ]);
          expect(await store.update(ownerId, a.id, { name: 'ghost' })).toBeNull();
          expect(await store.deleteTree(ownerId, a.id)).toEqual([]);
        }
        expect(await namespaceKeys(client, namespace)).toEqual([]);
      } finally {
        await deleteNamespace(client, namespace);
      }
    });
  });
}

/**
 * Inserts racing for one lookup part or one id: practically impossible with random parts,
 * and the case the insert protocol must still get right. At most one wins, find-by-lookup
 * answers the winner, losers leave nothing behind.
 */
export function describeContention(label: string, connect: () => Promise<RedisClient>): void {
  describe(`${label}: inserts racing for one lookup part or id`, () => {
    for (const field of ['lookup', 'id'] as const) {
      it(`of 4 concurrent inserts with the same ${field}, at most one succeeds`, async () => {
        const clients = await Promise.all([1, 2, 3, 4].map(() => connect()));
        const namespace = randomNamespace();
        const stores = clients.map((client) => redisStore(client, { namespace }));
        const [client] = clients;
        const [store] = stores;
        if (!client || !store) throw new Error('unreachable');
        try {
          for (let round = 0; round < 15; round++) {
            const template = await makeStoredKey();
            const contenders = await Promise.all(
              stores.map(() => makeStoredKey({ [field]: template[field] })),
            );
            const results = await Promise.allSettled(
              contenders.map((key, i) => stores[i]?.insert(key, { maxKeysPerOwner: 5 })),
            );
            const winners = contenders.filter((_, i) => results[i]?.status === 'fulfilled');
            expect(winners.length).toBeLessThanOrEqual(1);
            for (const result of results) {
              if (result.status === 'rejected') {
                expect(result.reason).toMatchObject({ name: 'KeyCollisionError' });
              }
            }
            for (const key of contenders) {
              const won = winners.includes(key);
              expect(await store.listByOwner(key.ownerId)).toEqual(won ? [key] : []);
              expect(await store.findByLookup(key.lookup)).toEqual(
                won ? key : (winners.find((w) => w.lookup === key.lookup) ?? null),
              );
            }
            for (const key of winners) expect(await store.delete(key.ownerId, key.id)).toBe(true);
          }
          expect(await namespaceKeys(client, namespace)).toEqual([]);
        } finally {
          await deleteNamespace(client, namespace);
        }
      });
    }
  });
}

/**
 * A bus whose subscriber connection is killed subscribes again, calls `onResync` and
 * delivers. `prepareKill` runs before the subscription (a single server refuses CLIENT on
 * a connection in subscriber mode) and returns what kills the subscriber's connection.
 */
export function describeBusResync<Client extends RedisClient>(
  label: string,
  connect: () => Promise<Client>,
  prepareKill: (subscriber: Client) => Promise<() => Promise<void>>,
): void {
  it(`${label}: a bus whose subscriber connection is killed subscribes again, calls onResync, and delivers`, async () => {
    const [publisher, subscriber] = await Promise.all([connect(), connect()]);
    const kill = await prepareKill(subscriber);
    const channel = `kwtest:${randomUUID()}`;
    const errors: unknown[] = [];
    const bus = redisBus({ publisher, subscriber, channel, onError: (e) => errors.push(e) });
    const events: string[] = [];
    let resyncs = 0;
    const stop = await bus.subscribe((event) => events.push(event.keyId), {
      onResync: () => resyncs++,
    });
    await kill();
    await vi.waitFor(() => expect(resyncs).toBe(1));
    await bus.publish({ type: 'revoked', keyId: 'key_after' });
    await vi.waitFor(() => expect(events).toEqual(['key_after']));
    await stop();
    expect(errors).toEqual([]);
  });
}

/** Delivery across connections, unsubscribe, and robustness to noise on the channel. */
export function describeBusDelivery(label: string, connect: () => Promise<RedisClient>): void {
  describe(`${label}: invalidation bus`, () => {
    // What the buses report; a test that expects reports takes them out.
    const errors: unknown[] = [];
    const onError = (error: unknown) => {
      errors.push(error);
    };
    afterEach(() => {
      expect(errors.splice(0)).toEqual([]);
    });
    const received = (into: InvalidationEvent[]) => (event: InvalidationEvent) => {
      into.push(event);
    };
    const until = async (check: () => boolean) => {
      const deadline = Date.now() + 5_000;
      while (!check()) {
        if (Date.now() > deadline) throw new Error('event not delivered within 5 s');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };

    it('two subscribers on separate connections both receive a published event', async () => {
      const channel = `kwtest:${randomUUID()}`;
      const [publisher, subA, subB] = await Promise.all([connect(), connect(), connect()]);
      const a: InvalidationEvent[] = [];
      const b: InvalidationEvent[] = [];
      await redisBus({ publisher, subscriber: subA, channel, onError }).subscribe(received(a));
      await redisBus({ publisher, subscriber: subB, channel, onError }).subscribe(received(b));
      await redisBus({ publisher, subscriber: publisher, channel, onError }).publish({
        type: 'revoked',
        keyId: 'key_x',
      });
      await until(() => a.length === 1 && b.length === 1);
      expect(a).toMatchObject([{ type: 'revoked', keyId: 'key_x' }]);
      expect(b).toMatchObject([{ type: 'revoked', keyId: 'key_x' }]);
    });

    it('unsubscribe stops delivery to that listener only', async () => {
      const channel = `kwtest:${randomUUID()}`;
      const [publisher, subA, subB] = await Promise.all([connect(), connect(), connect()]);
      const a: InvalidationEvent[] = [];
      const b: InvalidationEvent[] = [];
      const busA = redisBus({ publisher, subscriber: subA, channel, onError });
      const busB = redisBus({ publisher, subscriber: subB, channel, onError });
      const stopA = await busA.subscribe(received(a));
      await busB.subscribe(received(b));
      await busB.publish({ type: 'renamed', keyId: 'key_1' });
      await until(() => a.length === 1 && b.length === 1);
      await stopA();
      await busB.publish({ type: 'revoked', keyId: 'key_2' });
      await busB.publish({ type: 'revoked', keyId: 'key_3' });
      await until(() => b.length === 3);
      // Both went out after A's UNSUBSCRIBE was acknowledged: the server sends A nothing.
      expect(a.map((e) => e.keyId)).toEqual(['key_1']);
    });

    it('malformed payloads and a throwing listener go to onError; other listeners still get the event', async () => {
      const channel = `kwtest:${randomUUID()}`;
      const [publisher, subscriber] = await Promise.all([connect(), connect()]);
      const bus = redisBus({ publisher, subscriber, channel, onError });
      const got: InvalidationEvent[] = [];
      await bus.subscribe(() => {
        throw new Error('listener bug');
      });
      await bus.subscribe(received(got));
      await publisher.publish(channel, 'not json');
      await publisher.publish(channel, JSON.stringify({ type: 'Deleted!', keyId: 'key_1' }));
      await bus.publish({ type: 'revoked', keyId: 'key_2' });
      // On a Cluster the raw publishes may travel another way than the bus's: wait for all.
      await until(() => got.length === 1 && errors.length === 3);
      expect(got).toMatchObject([{ type: 'revoked', keyId: 'key_2' }]);
      expect(errors.splice(0).map(String).sort()).toEqual([
        `Error: keyward: ignored a malformed event on channel "${channel}".`,
        `Error: keyward: ignored a malformed event on channel "${channel}".`,
        'Error: listener bug',
      ]);
    });
  });
}
