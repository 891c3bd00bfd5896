import { randomBytes } from 'node:crypto';
import {
  compareNewestFirst,
  type InsertResult,
  KeyCollisionError,
  type KeyStore,
  type LastUsedUpdate,
  type StoredKey,
} from '@keyward/core';
import {
  escapePart,
  formatIndexEntry,
  keyLayout,
  parseIndexEntry,
  RECORD_INFIX,
} from './key-layout.js';
import {
  deleteRecord,
  dropIndex,
  insertRecord,
  lastUsedMerge,
  lastUsedResolve,
  type RedisClient,
  renameRecord,
  runScript,
  swapIndex,
} from './scripts.js';

export interface RedisStoreOptions {
  /**
   * Prefix of every key the store writes (`<namespace>:…`), so several apps or test runs
   * can share one Redis. Letters, digits, `_`, `.`, `:` and `-`.
   * @default 'keyward'
   */
  namespace?: string;
}

/**
 * The keyward store on Redis through ioredis: a single server (`Redis`) or a Redis
 * Cluster (`Cluster`). The host passes its own client and owns its lifecycle; the store
 * opens no connection. See key-layout.ts for where each value lives.
 *
 * Insert, delete and find cross two or three hash slots (the owner's, the lookup index's,
 * the id index's), which no single Redis command can do atomically on a Cluster. They are
 * ordered so that a crash between two steps leaves at worst an index entry that points at
 * no record: it reads as `null`, and a later insert of the same lookup or id takes it over
 * (see `reserve`). Everything scoped to one owner is one Lua script on one slot.
 */
export function redisStore(client: RedisClient, options: RedisStoreOptions = {}) {
  const keys = keyLayout(options.namespace ?? 'keyward');
  // ioredis prefixes the KEYS it sends but not key names built inside a script.
  const scriptRecordPrefix = (client.options.keyPrefix ?? '') + keys.recordPrefix;

  const recordKey = (owner: string, id: string) => keys.record(escapePart(owner), escapePart(id));
  const entryRecordKey = (value: string): string | null => {
    const entry = parseIndexEntry(value);
    return entry && keys.record(entry.owner, entry.id);
  };

  /** Is the record an index entry points at there, and (for the lookup index) the one
   * holding that lookup part? An entry that fails this is dangling. */
  const liveLookup = async (value: string, lookup: string) => {
    const record = entryRecordKey(value);
    return record !== null && (await client.hget(record, 'lookup')) === lookup;
  };
  const liveId = async (value: string) => {
    const record = entryRecordKey(value);
    return record !== null && (await client.exists(record)) === 1;
  };

  const swap = async (index: string, expected: string, next: string) =>
    (await runScript(client, swapIndex, [index], [expected, next])) === 1;

  /**
   * Claims an index entry for an insert with SET NX, so an existing entry is never
   * overwritten. An entry whose record is gone (left by a crash mid-insert or mid-delete)
   * is taken over with a compare-and-swap; the insert then re-checks that record after its
   * own write (see `insert`), so two inserts racing for one entry cannot both succeed.
   */
  async function reserve(
    index: string,
    value: string,
    isLive: (previous: string) => Promise<boolean>,
  ): Promise<Reservation> {
    // Two rounds: the entry may vanish between the SET NX and the GET.
    for (let round = 0; round < 2; round++) {
      if ((await client.set(index, value, 'NX')) === 'OK') return { index, value, previous: null };
      const previous = await client.get(index);
      if (previous === null) continue;
      if (await isLive(previous)) return null;
      return (await swap(index, previous, value)) ? { index, value, previous } : null;
    }
    return null;
  }

  /** Gives an entry back: deleted if it was free, restored if it was taken over (its
   * previous insert may yet turn out to be live, see `insert`). */
  const release = (r: Reservation | null | undefined) =>
    r ? swap(r.index, r.value, r.previous ?? '') : Promise.resolve(false);

  async function insert(key: StoredKey, cap: number): Promise<InsertResult> {
    const owner = escapePart(key.ownerId);
    const id = escapePart(key.id);
    const value = formatIndexEntry(owner, id, randomBytes(9).toString('base64url'));
    const ownerIds = keys.ownerIds(owner);
    const record = keys.record(owner, id);

    const [idClaim, lookupClaim] = await Promise.all([
      reserve(keys.idIndex(key.id), value, liveId),
      reserve(keys.lookupIndex(key.lookup), value, (previous) => liveLookup(previous, key.lookup)),
    ]);
    const giveBack = () => Promise.all([release(idClaim), release(lookupClaim)]);
    if (!idClaim || !lookupClaim) {
      await giveBack();
      throw new KeyCollisionError(idClaim ? 'lookup' : 'id');
    }

    // If this throws, whether the script ran is unknown: the claims stay, since releasing
    // them could orphan a record that was written. Unwritten, they are dangling and harmless.
    const outcome = await runScript(
      client,
      insertRecord,
      [ownerIds, record],
      [cap, key.id, ms(key.createdAt), ...recordFields(key)],
    );
    if (outcome !== 'ok') {
      await giveBack();
      if (outcome === 'limit') return { ok: false, reason: 'limit_reached' };
      throw new KeyCollisionError('id');
    }

    // Another insert of the same id or lookup can only have displaced our claims by
    // taking them over while our record did not exist yet; then it re-checks after its
    // write, as we do here for the entries we took over. Of two such inserts, each sees
    // the other's write or claim, so at most one of them keeps the entry. An entry that
    // named our own record needs no re-check: the script above already decided that
    // record was free, and it is ours now.
    const recheck = (previous: string | null, isLive: (v: string) => Promise<boolean>) =>
      previous === null || entryRecordKey(previous) === record ? false : isLive(previous);
    const [idHeld, lookupHeld, idPreviousLive, lookupPreviousLive] = await Promise.all([
      client.get(idClaim.index).then((v) => v === value),
      client.get(lookupClaim.index).then((v) => v === value),
      recheck(idClaim.previous, liveId),
      recheck(lookupClaim.previous, (previous) => liveLookup(previous, key.lookup)),
    ]);
    if (idHeld && lookupHeld && !idPreviousLive && !lookupPreviousLive) return { ok: true };
    await runScript(client, deleteRecord, [ownerIds, record], [key.id, key.lookup]);
    await giveBack();
    throw new KeyCollisionError(!idHeld || idPreviousLive ? 'id' : 'lookup');
  }

  async function read(record: string): Promise<StoredKey | null> {
    const fields = await client.hgetall(record);
    return Object.keys(fields).length === 0 ? null : toStoredKey(fields);
  }

  async function recordLastUsed(updates: readonly LastUsedUpdate[]): Promise<void> {
    // Duplicates collapse to their latest time before anything is sent.
    const latest = new Map<string, number>();
    for (const { id, lastUsedAt } of updates) {
      const at = ms(lastUsedAt);
      if (at > (latest.get(id) ?? Number.NEGATIVE_INFINITY)) latest.set(id, at);
    }
    if (latest.size === 0) return;

    if (!client.isCluster) {
      const ids = [...latest.keys()];
      await runScript(
        client,
        lastUsedResolve,
        ids.map((id) => keys.idIndex(id)),
        [scriptRecordPrefix, RECORD_INFIX, ...ids.map((id) => latest.get(id) ?? 0)],
      );
      return;
    }

    // Cluster: the id indexes live in slots of their own, so first resolve each id to its
    // record, then merge per owner, one script call per owner slot, all in parallel. A key
    // deleted in between is skipped by the script, which never recreates a record.
    const values = await Promise.all([...latest.keys()].map((id) => client.get(keys.idIndex(id))));
    const times = [...latest.values()];
    const byOwner = new Map<string, { records: string[]; times: number[] }>();
    for (const [i, value] of values.entries()) {
      const entry = value === null ? null : parseIndexEntry(value);
      if (!entry) continue;
      const group = byOwner.get(entry.owner) ?? { records: [], times: [] };
      group.records.push(keys.record(entry.owner, entry.id));
      group.times.push(times[i] ?? 0);
      byOwner.set(entry.owner, group);
    }
    await Promise.all(
      [...byOwner.values()].map(({ records, times }) =>
        runScript(client, lastUsedMerge, records, times),
      ),
    );
  }

  return {
    insert: (key, { maxKeysPerOwner }) => insert(key, maxKeysPerOwner),

    async findByLookup(lookup) {
      const value = await client.get(keys.lookupIndex(lookup));
      const record = value === null ? null : entryRecordKey(value);
      if (record === null) return null;
      const key = await read(record);
      // A dangling entry may name an id that was later reused for another lookup part.
      return key?.lookup === lookup ? key : null;
    },

    async listByOwner(ownerId) {
      const owner = escapePart(ownerId);
      const ids = await client.zrange(keys.ownerIds(owner), '0', '-1');
      if (ids.length === 0) return [];
      // Every record shares the owner's slot, so one pipeline reaches one node. A record
      // deleted since the ZRANGE reads as empty and is left out.
      const pipeline = client.pipeline();
      for (const id of ids) pipeline.hgetall(keys.record(owner, escapePart(id)));
      const replies = (await pipeline.exec()) ?? [];
      const found: StoredKey[] = [];
      for (const [error, fields] of replies) {
        if (error) throw error;
        const record = fields as Record<string, string>;
        if (Object.keys(record).length > 0) found.push(toStoredKey(record));
      }
      // Redis orders equal scores by bytes, JavaScript strings by UTF-16 units; the
      // contract is the latter, so the final order is settled here.
      return found.sort(compareNewestFirst);
    },

    async rename(ownerId, id, name) {
      const reply = await runScript(client, renameRecord, [recordKey(ownerId, id)], [name]);
      return Array.isArray(reply) ? toStoredKey(pairsToObject(reply)) : null;
    },

    async delete(ownerId, id) {
      const owner = escapePart(ownerId);
      const escapedId = escapePart(id);
      const lookup = await runScript(
        client,
        deleteRecord,
        [keys.ownerIds(owner), keys.record(owner, escapedId)],
        [id, ''],
      );
      if (typeof lookup !== 'string') return false;
      // The record is gone, so find-by-lookup already answers null; dropping the two
      // index entries is tidying. A crash here leaves them dangling, not wrong.
      const prefix = `${owner} ${escapedId} `;
      await Promise.all([
        runScript(client, dropIndex, [keys.lookupIndex(lookup)], [prefix]),
        runScript(client, dropIndex, [keys.idIndex(id)], [prefix]),
      ]);
      return true;
    },

    recordLastUsed,
  } satisfies KeyStore;
}

/** An index entry claimed by an insert; `previous` is the dangling value it replaced. */
type Reservation = { index: string; value: string; previous: string | null } | null;

function ms(date: Date): number {
  const value = date.getTime();
  if (!Number.isFinite(value)) throw new RangeError('redisStore: invalid Date in a key record.');
  return value;
}

function recordFields(key: StoredKey): string[] {
  const fields = [
    'id',
    key.id,
    'ownerId',
    key.ownerId,
    'name',
    key.name,
    'lookup',
    key.lookup,
    'hash',
    key.hash,
    'keyPrefix',
    key.keyPrefix,
    'keySuffix',
    key.keySuffix,
    'createdAt',
    String(ms(key.createdAt)),
  ];
  // Absent, not an empty string, for a key never used: HGET then answers nil.
  if (key.lastUsedAt) fields.push('lastUsedAt', String(ms(key.lastUsedAt)));
  return fields;
}

function pairsToObject(pairs: unknown[]): Record<string, string> {
  const object: Record<string, string> = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) object[String(pairs[i])] = String(pairs[i + 1]);
  return object;
}

function toStoredKey(fields: Record<string, string>): StoredKey {
  const field = (name: keyof StoredKey): string => {
    const value = fields[name];
    // Every script writes a whole record at once; a partial one is damage from outside.
    if (value === undefined) throw new Error(`redisStore: key record without "${name}".`);
    return value;
  };
  const lastUsedAt = fields.lastUsedAt;
  return {
    id: field('id'),
    ownerId: field('ownerId'),
    name: field('name'),
    lookup: field('lookup'),
    hash: field('hash'),
    keyPrefix: field('keyPrefix'),
    keySuffix: field('keySuffix'),
    createdAt: new Date(Number(field('createdAt'))),
    lastUsedAt: lastUsedAt === undefined ? null : new Date(Number(lastUsedAt)),
  };
}
