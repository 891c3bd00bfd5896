import { randomBytes } from 'node:crypto';
import {
  compareNewestFirst,
  type InsertResult,
  KeyCollisionError,
  type KeyStore,
  type LastUsedUpdate,
  type StoredCredits,
  type StoredKey,
  StoreMisconfiguredError,
} from '@keyward/core';
import type { Cluster, Redis } from 'ioredis';
import {
  escapePart,
  formatIndexEntry,
  keyLayout,
  parseIndexEntry,
  RECORD_INFIX,
} from './key-layout.js';
import {
  claimCreditsScript,
  claimEntry,
  claimWindowScript,
  commitEntry,
  deleteRecord,
  deleteTreeRecords,
  dropEntry,
  insertRecord,
  lastUsedMerge,
  lastUsedResolve,
  releaseEntry,
  restoreExpiry,
  returnCreditsScript,
  returnWindowScript,
  rollRecord,
  runScript,
  runScripts,
  takeOverEntry,
  updateRecord,
} from './scripts.js';

// Derived rather than imported: @keyward/core's index does not export these two names.
type KeyChanges = Parameters<KeyStore['update']>[2];
type RollResult = Awaited<ReturnType<KeyStore['roll']>>;

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
 * Every write scoped to one owner (cap check and insert, update, delete, deleteTree, the
 * record writes of roll, lastUsedAt) is one Lua script on the owner's slot, hence atomic with no read-modify-write race between
 * instances; a list reads that one slot. Insert and delete also touch the two index entries,
 * each in a slot of its own, which no Redis command can change together with the owner's
 * keys on a Cluster. So the steps are ordered, and each entry has two states:
 *
 * - claimed: written by an insert in progress, only where no entry exists (SET NX), with
 *   a TTL (`CLAIM_TTL_MS`). Nobody else can take it; if the insert dies, the TTL frees it.
 * - committed: made permanent (PERSIST) after the record was written. Its insert is over,
 *   so if its record is missing, a delete stopped (or is still) between its steps: such
 *   an entry is dangling and reads as nothing.
 *
 * Insert: claim both entries → owner script (cap, id, write) → commit both. A collision
 *   with a claimed entry, or with a committed one whose record exists, is a
 *   KeyCollisionError; nothing is overwritten, except a dangling committed entry, which is
 *   taken over with a compare-and-set (only its own record could revive it, and writing
 *   that record needs this very entry).
 * Roll: claim the new key's entries → owner script (old key there and unexpired, cap,
 *   write the new record, lower the old expiry) → commit both. Claims first, so a
 *   collision throws before anything is checked or written.
 * Delete: owner script (record and zset member) → drop both entries.
 * DeleteTree: read the owner's ids → owner script (checks the ids are still those, or the
 *   ids are read again; collects the tree by `createdBy`, deletes its records and zset
 *   members) → drop every deleted key's entries.
 *
 * What a crash (or a connection lost mid-call) between steps can leave:
 * - before or during the owner script: claims that expire by themselves;
 * - after the owner script, before the commits: a record whose claims then expire. The
 *   insert (or roll) threw, so nobody was given its raw key; the key is listed and can be
 *   deleted, but can never verify. This is the store's one "ghost", as with any database
 *   whose commit acknowledgement is lost. A roll's old key keeps its lowered expiry;
 * - during delete or deleteTree, after the owner script: committed entries with no record.
 *   They read as null (find checks the record and its lookup part), lastUsedAt skips them,
 *   and an insert of the same id or lookup takes them over, so nothing stays blocked.
 *
 * A `Redis` client must point at a server outside cluster mode: on a single server the
 * lastUsedAt batch is one script that reads keys in any slot. For a Redis Cluster, pass a
 * `Cluster` client.
 */
export function redisStore(client: Redis | Cluster, options: RedisStoreOptions = {}) {
  const keys = keyLayout(options.namespace ?? 'keyward');
  // ioredis prefixes the KEYS it sends but not key names built inside a script.
  const scriptRecordPrefix = (client.options.keyPrefix ?? '') + keys.recordPrefix;

  const recordKey = (owner: string, id: string) => keys.record(escapePart(owner), escapePart(id));
  const entryRecordKey = (value: string): string | null => {
    const entry = parseIndexEntry(value);
    return entry && keys.record(entry.owner, entry.id);
  };

  /**
   * Claims an index entry for an insert. `isLive` tells whether the record a committed
   * entry names still exists (for the lookup entry: and still holds that lookup part).
   */
  async function claim(
    entry: string,
    value: string,
    isLive: (committed: string) => Promise<boolean>,
  ): Promise<boolean> {
    const outcome = await runScript(client, claimEntry, [entry], [value, CLAIM_TTL_MS]);
    if (outcome === 1) return true;
    // 0: another insert holds the claim right now.
    if (typeof outcome !== 'string' || (await isLive(outcome))) return false;
    const taken = await runScript(client, takeOverEntry, [entry], [outcome, value, CLAIM_TTL_MS]);
    return taken === 1;
  }

  /**
   * Claims both index entries of a key about to be written, or throws KeyCollisionError
   * having released whatever it claimed.
   */
  async function claimEntries(key: StoredKey) {
    const owner = escapePart(key.ownerId);
    const id = escapePart(key.id);
    // The nonce makes this write's entries its own: release and commit compare it.
    const value = formatIndexEntry(owner, id, randomBytes(9).toString('base64url'));
    const idEntry = keys.idIndex(key.id);
    const lookupEntry = keys.lookupIndex(key.lookup);

    const [idClaimed, lookupClaimed] = await Promise.all([
      claim(idEntry, value, async (committed) => {
        const named = entryRecordKey(committed);
        return named !== null && (await client.exists(named)) === 1;
      }),
      claim(lookupEntry, value, async (committed) => {
        const named = entryRecordKey(committed);
        return named !== null && (await client.hget(named, 'lookup')) === key.lookup;
      }),
    ]);
    const release = async (): Promise<void> => {
      await Promise.all([
        runScript(client, releaseEntry, [idEntry], [value]),
        runScript(client, releaseEntry, [lookupEntry], [value]),
      ]);
    };
    if (!idClaimed || !lookupClaimed) {
      await release();
      throw new KeyCollisionError(idClaimed ? 'lookup' : 'id');
    }
    /** Makes both claims permanent; `false` when one had expired first. */
    const commit = async (): Promise<boolean> => {
      const commits = await Promise.all([
        runScript(client, commitEntry, [idEntry], [value]),
        runScript(client, commitEntry, [lookupEntry], [value]),
      ]);
      return commits.every((committed) => committed === 1);
    };
    return { release, commit };
  }

  async function insert(key: StoredKey, cap: number): Promise<InsertResult> {
    const owner = escapePart(key.ownerId);
    const ownerIds = keys.ownerIds(owner);
    const record = keys.record(owner, escapePart(key.id));
    // Built before claiming: an invalid Date throws here, with nothing claimed.
    const args = [cap, key.id, ms(key.createdAt), key.lookup, ...recordFields(key)];
    const claims = await claimEntries(key);

    // If this throws, whether the script ran is unknown, so the claims are left to expire
    // rather than released: the header comment lists what that can leave.
    const outcome = await runScript(client, insertRecord, [ownerIds, record], args);
    if (outcome !== 'ok') {
      await claims.release();
      if (outcome === 'limit') return { ok: false, reason: 'limit_reached' };
      throw new KeyCollisionError('id');
    }

    if (await claims.commit()) return { ok: true };
    // A claim expired before its commit: the insert outlasted CLAIM_TTL_MS (a server or
    // network stall). Its record must not stay without its entries.
    await runScript(client, deleteRecord, [ownerIds, record], [key.id, key.lookup]);
    await claims.release();
    throw tooSlow('insert');
  }

  async function roll(
    ownerId: string,
    id: string,
    next: StoredKey,
    options: { previousExpiresAt: Date; now: Date; maxKeysPerOwner: number },
  ): Promise<RollResult> {
    // Both records must share the owner's slot; the key service never rolls across owners.
    if (next.ownerId !== ownerId) {
      throw new TypeError("keyward: the Redis store's roll() needs a new key of the same owner.");
    }
    const owner = escapePart(ownerId);
    const ownerIds = keys.ownerIds(owner);
    const newRecord = keys.record(owner, escapePart(next.id));
    const oldRecord = keys.record(owner, escapePart(id));
    const args = [
      options.maxKeysPerOwner,
      next.id,
      ms(next.createdAt),
      next.lookup,
      ms(options.now),
      ms(options.previousExpiresAt),
      ...recordFields(next),
    ];
    const claims = await claimEntries(next);

    // As in insert: if this throws, the claims are left to expire.
    const outcome = await runScript(client, rollRecord, [ownerIds, newRecord, oldRecord], args);
    if (!Array.isArray(outcome)) {
      await claims.release();
      if (outcome === 'not_found') return { ok: false, reason: 'not_found' };
      if (outcome === 'limit') return { ok: false, reason: 'limit_reached' };
      throw new KeyCollisionError('id');
    }
    const [before = '', ...pairs] = outcome as string[];
    const oldFields = pairsToObject(pairs);
    const previous = toStoredKey(oldFields);

    if (await claims.commit()) return { ok: true, previous };
    // As in insert, undone: the new record goes, and the old key gets its expiry back
    // unless an update has lowered it since.
    await runScript(client, deleteRecord, [ownerIds, newRecord], [next.id, next.lookup]);
    await runScript(client, restoreExpiry, [oldRecord], [oldFields.expiresAt ?? '', before]);
    await claims.release();
    throw tooSlow('roll');
  }

  async function deleteTree(ownerId: string, id: string): Promise<string[]> {
    const owner = escapePart(ownerId);
    const ownerIds = keys.ownerIds(owner);
    for (let attempt = 0; attempt < DELETE_TREE_ATTEMPTS; attempt++) {
      const ids = await client.zrange(ownerIds, '0', '-1');
      if (!ids.includes(id)) return [];
      const reply = await runScript(
        client,
        deleteTreeRecords,
        [ownerIds, ...ids.map((member) => keys.record(owner, escapePart(member)))],
        [id, ...ids],
      );
      // 'stale': an insert or delete of this owner came in between; read the ids again.
      if (!Array.isArray(reply)) continue;
      const deleted: { id: string; lookup: string }[] = [];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        deleted.push({ id: String(reply[i]), lookup: String(reply[i + 1]) });
      }
      // The records are gone, so none of these keys verifies any more; as in delete, the
      // index entries are tidying.
      await Promise.all(
        deleted.flatMap(({ id: deletedId, lookup }) => {
          const prefix = `${owner} ${escapePart(deletedId)} `;
          return [
            runScript(client, dropEntry, [keys.lookupIndex(lookup)], [prefix]),
            runScript(client, dropEntry, [keys.idIndex(deletedId)], [prefix]),
          ];
        }),
      );
      return deleted.map((key) => key.id);
    }
    throw new Error(
      `keyward: the Redis store's deleteTree() met a concurrent change of the owner's keys ${DELETE_TREE_ATTEMPTS} times in a row; nothing was deleted.`,
    );
  }

  async function update(ownerId: string, id: string, changes: KeyChanges) {
    const { name, metadata, expiresAt, rateLimit, credits, leak } = changes;
    const reply = await runScript(
      client,
      updateRecord,
      [recordKey(ownerId, id)],
      [
        name === undefined ? '0' : '1',
        name ?? '',
        metadata === undefined ? '0' : '1',
        metadata === undefined ? '' : JSON.stringify(metadata),
        expiresAt === undefined ? '' : ms(expiresAt),
        rateLimit === undefined ? '0' : '1',
        rateLimit ? JSON.stringify(rateLimit) : '',
        credits === undefined ? '0' : '1',
        ...creditFields(credits ?? null),
        leak === undefined ? '' : ms(leak.at),
        leak?.source ?? '',
      ],
    );
    return Array.isArray(reply) ? toStoredKey(pairsToObject(reply)) : null;
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
      // One pipeline, so one round trip, in chunks: a single script over a huge batch
      // would hold the server for its whole length, while between chunks other clients'
      // commands get their turn.
      const entries = [...latest];
      const calls: { keys: string[]; args: (string | number)[] }[] = [];
      for (let start = 0; start < entries.length; start += LAST_USED_CHUNK) {
        const chunk = entries.slice(start, start + LAST_USED_CHUNK);
        calls.push({
          keys: chunk.map(([id]) => keys.idIndex(id)),
          args: [scriptRecordPrefix, RECORD_INFIX, ...chunk.map(([, at]) => at)],
        });
      }
      await runScripts(client, lastUsedResolve, calls);
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

    update,

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
        runScript(client, dropEntry, [keys.lookupIndex(lookup)], [prefix]),
        runScript(client, dropEntry, [keys.idIndex(id)], [prefix]),
      ]);
      return true;
    },

    deleteTree,
    roll,
    recordLastUsed,

    async claimWindow(ownerId, id, { windowStart, limit, want, atLeast }) {
      const reply = (await runScript(
        client,
        claimWindowScript,
        [recordKey(ownerId, id)],
        [String(windowStart), limit, want, atLeast],
      )) as [number, number];
      return { granted: Number(reply[0]), remaining: Number(reply[1]) };
    },

    async returnWindow(ownerId, id, windowStart, amount) {
      await runScript(
        client,
        returnWindowScript,
        [recordKey(ownerId, id)],
        [String(windowStart), amount],
      );
    },

    async claimCredits(ownerId, id, { want, atLeast, periodStart }) {
      const reply = await runScript(
        client,
        claimCreditsScript,
        [recordKey(ownerId, id)],
        [periodStart === null ? '' : String(periodStart), want, atLeast],
      );
      if (!Array.isArray(reply)) return null;
      return {
        granted: Number(reply[0]),
        remaining: Number(reply[1]),
        resetAt: Number(reply[2]),
      };
    },

    async returnCredits(ownerId, id, amount, resetAt) {
      await runScript(
        client,
        returnCreditsScript,
        [recordKey(ownerId, id)],
        [amount, String(resetAt)],
      );
    },

    /**
     * PING, then what a wrong client would break: a `Redis` client on a server in cluster
     * mode would run the single-server lastUsedAt script, whose keys span slots.
     */
    async check() {
      await client.ping();
      if (client.isCluster) return;
      const info = await client.info('cluster');
      if (/^cluster_enabled:1\b/m.test(info)) {
        throw new StoreMisconfiguredError(
          'keyward: redisStore was given a Redis client for a server in cluster mode; pass an ioredis Cluster client instead.',
        );
      }
    },
  } satisfies KeyStore;
}

/** Ids per script call on a single server: each call runs for well under a millisecond. */
const LAST_USED_CHUNK = 500;

/** How long an insert's claim on an index entry lasts before its commit. It only needs
 * to outlast three round trips; it is long so that a slow server rolls inserts back
 * rather than racing them, and short enough that a crashed insert blocks nothing for
 * long (its lookup and id are random anyway). */
const CLAIM_TTL_MS = 60_000;

/** How often deleteTree reads an owner's ids again when they changed under it. Only an
 * owner's own inserts and deletes change them, and each retry is two round trips. */
const DELETE_TREE_ATTEMPTS = 10;

function tooSlow(operation: string): Error {
  return new Error(
    `keyward: the Redis store's ${operation} took longer than ${CLAIM_TTL_MS} ms and was rolled back; nothing was stored.`,
  );
}

function ms(date: Date): number {
  const value = date.getTime();
  if (!Number.isFinite(value)) throw new RangeError('keyward: invalid Date in a Redis key record.');
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
    'expiresAt',
    key.expiresAt ? String(ms(key.expiresAt)) : '',
    'scopes',
    JSON.stringify(key.scopes),
    // The host's object as JSON text, once: its key order comes back as it was given.
    'metadata',
    JSON.stringify(key.metadata),
    'createdBy',
    key.createdBy ?? '',
  ];
  // Absent, not an empty string, for a key never used: HGET then answers nil.
  if (key.lastUsedAt) fields.push('lastUsedAt', String(ms(key.lastUsedAt)));
  if (key.rateLimit) fields.push('rateLimit', JSON.stringify(key.rateLimit));
  if (key.credits) {
    const names = [
      'creditsRemaining',
      'creditsRefillAmount',
      'creditsRefillEvery',
      'creditsStrict',
      'creditsResetAt',
    ];
    for (const [i, value] of creditFields(key.credits).entries()) {
      fields.push(names[i] as string, value);
    }
  }
  // Absent for a key never reported leaked, as on a record written before the mark existed.
  if (key.leakedAt)
    fields.push('leakedAt', String(ms(key.leakedAt)), 'leakSource', key.leakSource ?? '');
  return fields;
}

/** Remaining, refill amount, refill period, strict, resetAt: as the hash holds them ('' for
 * none; remaining '' for no credits at all). */
function creditFields(credits: StoredCredits | null): string[] {
  if (!credits) return ['', '', '', '', ''];
  return [
    String(credits.remaining),
    credits.refill ? String(credits.refill.amount) : '',
    credits.refill?.every ?? '',
    credits.strict ? '1' : '0',
    String(credits.resetAt),
  ];
}

function toCredits(fields: Record<string, string>): StoredCredits | null {
  const { creditsRemaining, creditsRefillAmount, creditsRefillEvery } = fields;
  if (creditsRemaining === undefined || creditsRemaining === '') return null;
  return {
    remaining: Number(creditsRemaining),
    refill:
      creditsRefillAmount && (creditsRefillEvery === 'day' || creditsRefillEvery === 'month')
        ? { amount: Number(creditsRefillAmount), every: creditsRefillEvery }
        : null,
    strict: fields.creditsStrict === '1',
    resetAt: Number(fields.creditsResetAt ?? 0),
  };
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
    if (value === undefined) throw new Error(`keyward: Redis key record without "${name}".`);
    return value;
  };
  // A record written before expiry, scopes, metadata and createdBy existed has none of
  // them: it never expires, may do everything, and was made by the host's code.
  const { lastUsedAt, expiresAt, scopes, metadata, createdBy, leakedAt, leakSource } = fields;
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
    expiresAt: expiresAt ? new Date(Number(expiresAt)) : null,
    scopes: scopes === undefined ? ['*'] : (JSON.parse(scopes) as string[]),
    metadata: metadata === undefined ? {} : (JSON.parse(metadata) as StoredKey['metadata']),
    createdBy: createdBy ? createdBy : null,
    // Absent in a record written before limits existed: no limit, no credits.
    rateLimit: fields.rateLimit ? (JSON.parse(fields.rateLimit) as StoredKey['rateLimit']) : null,
    credits: toCredits(fields),
    leakedAt: leakedAt ? new Date(Number(leakedAt)) : null,
    leakSource: leakedAt ? (leakSource ?? '') : null,
  };
}
