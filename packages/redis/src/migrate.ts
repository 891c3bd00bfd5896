import type { Cluster, Redis } from 'ioredis';
import { escapePart, keyLayout, RECORD_INFIX, unescapePart } from './key-layout.js';
import { defineScript, type RedisClient, releaseEntry, runScript } from './scripts.js';

export interface MigrateRedisStoreOptions {
  /**
   * The namespace the store was given.
   * @default 'keyward'
   */
  namespace?: string;
}

export interface MigrateRedisStoreResult {
  /** Key records moved to their current name (with their owner's id list entry). */
  records: number;
  /** Lookup and id index entries rewritten to point at the moved records. */
  entries: number;
}

/**
 * Brings the keys an earlier version of `redisStore` wrote up to the current layout. The
 * first layout wrote an owner or key id holding a tab, newline or other whitespace (all
 * but the plain space) or a control character raw into key names and index values; the
 * store now escapes them (see `escapePart`), so such an owner's keys sit under names the
 * store no longer reads. Ids without those characters have the same names in both
 * layouts and are left alone, so on most stores this changes nothing.
 *
 * Run it once after upgrading, before the upgraded instances serve (and after no older one
 * runs any more), like `migrate` for the Postgres store. It is idempotent and can be run
 * again after an interruption. It SCANs the namespace on every master (Cluster too) and,
 * for each record to move: copies it to its new name, adds it to the owner's new id list,
 * repoints its two index entries (so a verification in between still finds a record), then
 * removes the old record and list entry. It works through the host's client, keyPrefix
 * included, and uses only single-key scripts, so it runs on a Cluster.
 */
export async function migrateRedisStore(
  client: Redis | Cluster,
  options: MigrateRedisStoreOptions = {},
): Promise<MigrateRedisStoreResult> {
  const keys = keyLayout(options.namespace ?? 'keyward');
  const result: MigrateRedisStoreResult = { records: 0, entries: 0 };
  const oldLists: { name: string; owner: string }[] = [];

  for await (const name of scanNamespace(client, keys.pattern)) {
    const parsed = parseOwnerKey(name, keys.recordPrefix);
    if (!parsed) continue;
    if (parsed.id === undefined) {
      if (keys.ownerIds(escapePart(parsed.owner)) !== name) oldLists.push({ name, ...parsed });
      continue;
    }
    if (keys.record(escapePart(parsed.owner), escapePart(parsed.id)) === name) continue;
    await moveRecord(client, keys, parsed.owner, parsed.id, result, name);
  }
  // Members still listed under an old name: records the SCAN had not reached yet when it
  // passed the list, or ghosts with no record left (those are dropped).
  for (const { name: oldList, owner } of oldLists) {
    for (const id of await client.zrange(oldList, '0', '-1')) {
      await moveRecord(client, keys, owner, id, result);
      await client.zrem(oldList, id);
    }
  }
  return result;
}

type Layout = ReturnType<typeof keyLayout>;

async function moveRecord(
  client: RedisClient,
  keys: Layout,
  owner: string,
  id: string,
  result: MigrateRedisStoreResult,
  oldRecord = keys.record(escapeFirstLayout(owner), escapeFirstLayout(id)),
): Promise<void> {
  const [oldOwner, oldId] = [escapeFirstLayout(owner), escapeFirstLayout(id)];
  const [newOwner, newId] = [escapePart(owner), escapePart(id)];
  const newRecord = keys.record(newOwner, newId);
  const fields = await client.hgetall(oldRecord);
  const lookup = fields.lookup;
  const createdAt = fields.createdAt;
  if (lookup === undefined || createdAt === undefined) {
    // Nothing (left) to move: keep the list entry only if a moved record backs it.
    const movedAt = await client.hget(newRecord, 'createdAt');
    if (movedAt !== null) await client.zadd(keys.ownerIds(newOwner), 'NX', movedAt, id);
    return;
  }
  // A record already at the new name is this one, copied by an interrupted earlier run
  // and perhaps updated since: it wins.
  await runScript(client, copyIfAbsent, [newRecord], Object.entries(fields).flat());
  await client.zadd(keys.ownerIds(newOwner), 'NX', createdAt, id);

  const oldPrefix = `${oldOwner} ${oldId} `;
  const entries: [string, string][] = [
    [`${keys.namespace}:i:${escapeFirstLayout(id)}`, keys.idIndex(id)],
    [`${keys.namespace}:l:${escapeFirstLayout(lookup)}`, keys.lookupIndex(lookup)],
  ];
  for (const [oldEntry, newEntry] of entries) {
    const value = await client.get(oldEntry);
    if (value === null || !value.startsWith(oldPrefix)) continue;
    const nonce = value.slice(oldPrefix.length);
    const newValue = `${newOwner} ${newId} ${nonce}`;
    if (oldEntry === newEntry) {
      if ((await runScript(client, replaceEntry, [oldEntry], [value, newValue])) === 1) {
        result.entries++;
      }
      continue;
    }
    // Two names, perhaps two slots: write the new one, then remove the old one if unchanged.
    const set = await client.set(newEntry, newValue, 'NX');
    if (set === 'OK' || (await client.get(newEntry)) === newValue) result.entries++;
    await runScript(client, releaseEntry, [oldEntry], [value]);
  }

  await client.del(oldRecord);
  await client.zrem(keys.ownerIds(oldOwner), id);
  result.records++;
}

/** How the first layout escaped an owner or key id: `%`, `{`, `}` and the space only. */
function escapeFirstLayout(part: string): string {
  return part.replace(/[%{} ]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The owner and (for a record) the key id a name holds, unescaped; either layout. */
function parseOwnerKey(name: string, recordPrefix: string): { owner: string; id?: string } | null {
  if (!name.startsWith(recordPrefix)) return null;
  const rest = name.slice(recordPrefix.length);
  // Both layouts escape `}`: the first one closes the owner's hash tag.
  const close = rest.indexOf('}');
  if (close <= 0) return null;
  const owner = unescapePart(rest.slice(0, close));
  const tail = rest.slice(close);
  if (tail === '}:ids') return { owner };
  if (!tail.startsWith(RECORD_INFIX)) return null;
  return { owner, id: unescapePart(tail.slice(RECORD_INFIX.length)) };
}

/** Every key name matching `pattern`, from every master of a Cluster, without the
 * client's keyPrefix (SCAN matches and answers whole names; commands add the prefix). */
async function* scanNamespace(client: RedisClient, pattern: string): AsyncGenerator<string> {
  const keyPrefix = client.options.keyPrefix ?? '';
  const nodes = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, names] = await node.scan(cursor, 'MATCH', keyPrefix + pattern, 'COUNT', 500);
      cursor = next;
      for (const name of names) yield name.slice(keyPrefix.length);
    } while (cursor !== '0');
  }
}

/** KEYS: record. ARGV: field/value pairs. Writes the record unless one is there. */
const copyIfAbsent = defineScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`);

/** KEYS: index entry. ARGV: expected value, new value. Keeps any TTL (a claim stays one). */
const replaceEntry = defineScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
`);
