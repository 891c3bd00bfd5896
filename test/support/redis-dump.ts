import type { Cluster, Redis } from 'ioredis';

/** What the dumps read from: one server, or a Cluster (read from every master). */
type RedisClient = Redis | Cluster;

/** Every key matching `pattern`, from every master of a Cluster, sorted. SCAN, not KEYS:
 * the server is shared and may hold many keys besides the test's. */
export async function redisKeys(client: RedisClient, pattern: string): Promise<string[]> {
  const nodes = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
  const found: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
  }
  return [...new Set(found)].sort();
}

/** Every key of a namespace (`<namespace>:*`). */
export function namespaceKeys(client: RedisClient, namespace: string): Promise<string[]> {
  return redisKeys(client, `${namespace}:*`);
}

/** Every key matching `pattern` with its type and its value, whatever the type, as JSON. */
async function entries(
  client: RedisClient,
  pattern: string,
): Promise<Array<{ key: string; type: string; value: string }>> {
  const found = [];
  for (const key of await redisKeys(client, pattern)) {
    const type = await client.type(key);
    let value: unknown;
    if (type === 'string') value = await client.get(key);
    else if (type === 'hash') value = await client.hgetall(key);
    else if (type === 'zset') value = await client.zrange(key, '0', '-1', 'WITHSCORES');
    else if (type === 'set') value = await client.smembers(key);
    else if (type === 'list') value = await client.lrange(key, 0, -1);
    else value = (await client.dumpBuffer(key))?.toString('hex');
    found.push({ key, type, value: JSON.stringify(value) });
  }
  return found;
}

/** Every key matching `pattern` with its value as JSON, as `[key, value]` pairs: what a
 * secret-hygiene check reads. */
export async function redisEntries(
  client: RedisClient,
  pattern: string,
): Promise<Array<[string, string]>> {
  return (await entries(client, pattern)).map(({ key, value }) => [key, value]);
}

/** Every key of a namespace with its type and value, one line each: what a store's
 * "nothing changed" check compares. */
export async function dumpNamespace(client: RedisClient, namespace: string): Promise<string> {
  const found = await entries(client, `${namespace}:*`);
  return found.map(({ key, type, value }) => `${key} ${type} ${value}`).join('\n');
}

/** Deletes every key of a namespace, one DEL per key: on a Cluster the keys span slots. */
export async function deleteNamespace(client: RedisClient, namespace: string): Promise<void> {
  await Promise.all((await namespaceKeys(client, namespace)).map((key) => client.del(key)));
}
