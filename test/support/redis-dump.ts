import type { Redis } from 'ioredis';

/** Every key matching `pattern` on a single Redis server, with its value whatever its
 * type, as `[key, value as JSON]` pairs: what a secret-hygiene check reads. */
export async function redisEntries(
  client: Redis,
  pattern: string,
): Promise<Array<[string, string]>> {
  const entries: Array<[string, string]> = [];
  for (const key of await client.keys(pattern)) {
    const type = await client.type(key);
    const value =
      type === 'hash'
        ? await client.hgetall(key)
        : type === 'zset'
          ? await client.zrange(key, '0', '-1', 'WITHSCORES')
          : type === 'set'
            ? await client.smembers(key)
            : type === 'list'
              ? await client.lrange(key, 0, -1)
              : await client.get(key);
    entries.push([key, JSON.stringify(value)]);
  }
  return entries;
}
