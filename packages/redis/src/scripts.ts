import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/**
 * The Lua scripts behind every step that must be atomic. Each script but `lastUsedResolve`
 * touches only keys it is given, all under one owner's hash tag (or one index key), so a
 * Cluster runs it on one node with no CROSSSLOT. Redis runs a script to the end before any
 * other command: that is what makes the cap exact across instances without locks.
 *
 * ioredis re-sends commands left unanswered by a dropped connection
 * (`autoResendUnfulfilledCommands`), so a script may run twice for one call. Each is
 * written so that a second run answers what the first did, except `deleteRecord` and
 * `deleteTreeRecords`, whose second run finds nothing and answers nil or an empty list
 * (the keys are deleted all the same).
 *
 * Timestamps go in and out as the decimal strings the caller sent: Lua numbers are
 * doubles and `tostring` would print large ones in exponent form.
 */
export interface Script {
  readonly lua: string;
  readonly sha: string;
}

export function defineScript(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** KEYS: ids zset, record. ARGV: cap, id, createdAt ms, lookup, then field/value pairs.
 * Returns 'ok', 'limit' or 'id'. A record with this id and lookup part can only be this
 * insert's own (it holds the lookup claim), written by an earlier run of the same call
 * that ioredis re-sent after a reconnect: that is 'ok', not a collision. */
export const insertRecord = defineScript(`
local existing = redis.call('HGET', KEYS[2], 'lookup')
if existing then return existing == ARGV[4] and 'ok' or 'id' end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 'limit' end
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 'ok'
`);

/** KEYS: ids zset, record. ARGV: id, expected lookup ('' for any). Returns the deleted
 * record's lookup part, or nil when there was nothing (or something else) to delete.
 * An emptied zset vanishes with its last member, so an owner leaves no key behind. */
export const deleteRecord = defineScript(`
local lookup = redis.call('HGET', KEYS[2], 'lookup')
if not lookup or (ARGV[2] ~= '' and lookup ~= ARGV[2]) then return false end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return lookup
`);

/**
 * Lowers a record's expiry to `at` (ms) unless it already ends earlier: never extends it. An
 * absent or empty `expiresAt` (a record written before expiry existed, or a key that never
 * expires) means never. Numbers compare as doubles, exact for milliseconds; the string the
 * caller sent is what gets written.
 */
const lowerExpiry = `
local function lowerExpiry(record, at)
  local current = redis.call('HGET', record, 'expiresAt')
  if not current or current == '' or tonumber(at) < tonumber(current) then
    redis.call('HSET', record, 'expiresAt', at)
  end
end
`;

/** KEYS: record. ARGV: '1' to set the name or '0', name, '1' to set the metadata or '0',
 * metadata JSON, expiry ms to keep the earlier of ('' to leave it), '1' to set the rate
 * limit or '0', its JSON ('' removes it), '1' to set the credits or '0', then remaining,
 * refill amount, refill period, strict ('1'/'0') and resetAt ms (remaining '' removes them),
 * then the leak mark ms ('' to leave it) and its source: a record already marked keeps its
 * first mark. Returns the updated record as HGETALL pairs, or nil when there is no such
 * record. */
export const updateRecord = defineScript(`${lowerExpiry}
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'name', ARGV[2]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'metadata', ARGV[4]) end
if ARGV[5] ~= '' then lowerExpiry(KEYS[1], ARGV[5]) end
if ARGV[6] == '1' then
  if ARGV[7] == '' then redis.call('HDEL', KEYS[1], 'rateLimit')
  else redis.call('HSET', KEYS[1], 'rateLimit', ARGV[7]) end
end
if ARGV[8] == '1' then
  if ARGV[9] == '' then
    redis.call('HDEL', KEYS[1], 'creditsRemaining', 'creditsRefillAmount', 'creditsRefillEvery',
      'creditsStrict', 'creditsResetAt')
  else
    redis.call('HSET', KEYS[1], 'creditsRemaining', ARGV[9], 'creditsRefillAmount', ARGV[10],
      'creditsRefillEvery', ARGV[11], 'creditsStrict', ARGV[12], 'creditsResetAt', ARGV[13])
  end
end
if ARGV[14] and ARGV[14] ~= '' and redis.call('HEXISTS', KEYS[1], 'leakedAt') == 0 then
  redis.call('HSET', KEYS[1], 'leakedAt', ARGV[14], 'leakSource', ARGV[15])
end
return redis.call('HGETALL', KEYS[1])
`);

/**
 * `leaseGrant` of @keyward/core: what a claim grants from `left`. Every value is a small
 * integer, exact as a Lua double.
 */
const leaseGrant = `
local function leaseGrant(left, want, atLeast)
  if left < atLeast or left <= 0 then return 0 end
  return math.min(left, math.max(atLeast, math.min(want, math.ceil(left / 4))))
end
`;

/**
 * KEYS: record. ARGV: window start ms, limit, want, atLeast. The count lives in the
 * record's own hash (`windowStart`, `windowUsed`), in its slot, and goes with it. Returns
 * { granted, remaining }; {0, 0} for no record or a claim of an older window. A run
 * re-sent after a reconnect grants again: units lost to the caller (an undershoot), never
 * more than the limit.
 */
export const claimWindowScript = defineScript(`${leaseGrant}
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local f = redis.call('HMGET', KEYS[1], 'windowStart', 'windowUsed')
local stored = tonumber(f[1] or '0')
local start = tonumber(ARGV[1])
if stored > start then return {0, 0} end
local used = 0
if stored == start then used = tonumber(f[2] or '0') end
local left = math.max(0, tonumber(ARGV[2]) - used)
local granted = leaseGrant(left, tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'windowStart', ARGV[1], 'windowUsed', used + granted)
return {granted, left - granted}
`);

/** KEYS: record. ARGV: window start ms, amount. Gives unspent units back to that window,
 * if the record still counts it. */
export const returnWindowScript = defineScript(`
local f = redis.call('HMGET', KEYS[1], 'windowStart', 'windowUsed')
if f[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'windowUsed', math.max(0, tonumber(f[2] or '0') - tonumber(ARGV[2])))
return 0
`);

/**
 * KEYS: record. ARGV: start of the current refill period ms ('' for none), want, atLeast.
 * Refills the balance first when it was set before that period. Returns { granted,
 * remaining, resetAt }, or nil when the record is gone or has no credits.
 */
export const claimCreditsScript = defineScript(`${leaseGrant}
local f = redis.call('HMGET', KEYS[1], 'creditsRemaining', 'creditsResetAt', 'creditsRefillAmount')
if not f[1] or f[1] == '' then return false end
local balance = tonumber(f[1])
local resetAt = f[2] or '0'
if f[3] and f[3] ~= '' and ARGV[1] ~= '' and tonumber(resetAt) < tonumber(ARGV[1]) then
  balance = tonumber(f[3])
  resetAt = ARGV[1]
end
local granted = leaseGrant(balance, tonumber(ARGV[2]), tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'creditsRemaining', balance - granted, 'creditsResetAt', resetAt)
return {granted, balance - granted, resetAt}
`);

/** KEYS: record. ARGV: amount, resetAt ms of the balance it came from. */
export const returnCreditsScript = defineScript(`
local f = redis.call('HMGET', KEYS[1], 'creditsRemaining', 'creditsResetAt')
if not f[1] or f[1] == '' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'creditsRemaining', tonumber(f[1]) + tonumber(ARGV[1]))
return 0
`);

/**
 * KEYS: ids zset, new record, old record. ARGV: cap, new id, new createdAt ms, new lookup,
 * now ms, old key's latest expiry ms, then the new record's field/value pairs.
 * Returns 'id' (the new id is taken), 'not_found' (no old record, or it expired by now),
 * 'limit', or on success the old key's expiry before the roll ('' for never) followed by
 * the old record as HGETALL pairs.
 *
 * A new record holding the new lookup part is this roll's own, from an earlier run of the
 * same call (the caller holds the lookup claim): the roll is done, and the answer is the
 * old record as it is. If that old key has been deleted since, the new one goes too and
 * the answer is 'not_found': a roll never leaves a key behind that its caller was refused.
 */
export const rollRecord = defineScript(`${lowerExpiry}
local existing = redis.call('HGET', KEYS[2], 'lookup')
if existing then
  if existing ~= ARGV[4] then return 'id' end
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('DEL', KEYS[2])
    redis.call('ZREM', KEYS[1], ARGV[2])
    return 'not_found'
  end
  local current = redis.call('HGET', KEYS[3], 'expiresAt') or ''
  local old = redis.call('HGETALL', KEYS[3])
  table.insert(old, 1, current)
  return old
end
if redis.call('EXISTS', KEYS[3]) == 0 then return 'not_found' end
local before = redis.call('HGET', KEYS[3], 'expiresAt') or ''
if before ~= '' and tonumber(before) <= tonumber(ARGV[5]) then return 'not_found' end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 'limit' end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
lowerExpiry(KEYS[3], ARGV[6])
-- The balance moves to the new key and the window's count is copied (docs/design.md,
-- "Changes, roll, revoke, expiry").
local moved = redis.call('HMGET', KEYS[3], 'creditsRemaining', 'creditsResetAt',
  'creditsRefillAmount', 'creditsRefillEvery', 'windowStart', 'windowUsed')
if moved[1] and moved[1] ~= '' then
  redis.call('HSET', KEYS[2], 'creditsRemaining', moved[1], 'creditsResetAt', moved[2],
    'creditsRefillAmount', moved[3] or '', 'creditsRefillEvery', moved[4] or '')
  redis.call('HSET', KEYS[3], 'creditsRemaining', '0', 'creditsResetAt', ARGV[5],
    'creditsRefillAmount', '', 'creditsRefillEvery', '')
end
if moved[5] then redis.call('HSET', KEYS[2], 'windowStart', moved[5], 'windowUsed', moved[6] or '0') end
local old = redis.call('HGETALL', KEYS[3])
table.insert(old, 1, before)
return old
`);

/** KEYS: record. ARGV: the expiry a roll wrote, the one it replaced ('' for never). Undoes
 * that roll's lowering, unless the expiry has changed since (an update lowered it again). */
export const restoreExpiry = defineScript(`
if redis.call('HGET', KEYS[1], 'expiresAt') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'expiresAt', ARGV[2])
end
return 0
`);

/**
 * KEYS: ids zset, then the record of each id. ARGV: the named id, then every id of the
 * owner, in the order of their records. The caller read the ids with ZRANGE; since keys a
 * script touches must be named up front on a Cluster (and the record names hold escaped
 * ids, which Lua cannot rebuild), the script first checks that the zset still holds exactly
 * those ids, and answers 'stale' for the caller to read them again if not.
 *
 * Otherwise it collects the named key and, transitively, every key whose `createdBy` names
 * one collected (each record read once; the collected set stops a cycle), deletes them all
 * and returns id, lookup, id, lookup… with the named key first; an empty array when there
 * is no such record. A second run (a re-sent call) finds nothing and answers empty or
 * 'stale', like `deleteRecord`.
 */
export const deleteTreeRecords = defineScript(`
local count = #KEYS - 1
if redis.call('ZCARD', KEYS[1]) ~= count then return 'stale' end
local index = {}
for i = 1, count do
  local id = ARGV[i + 1]
  if not redis.call('ZSCORE', KEYS[1], id) then return 'stale' end
  index[id] = i
end
local root = index[ARGV[1]]
if not root or redis.call('EXISTS', KEYS[root + 1]) == 0 then return {} end
local children = {}
for i = 1, count do
  local parent = redis.call('HGET', KEYS[i + 1], 'createdBy')
  if parent and parent ~= '' then
    children[parent] = children[parent] or {}
    table.insert(children[parent], i)
  end
end
local doomed, taken = { root }, { [root] = true }
local cursor = 1
while cursor <= #doomed do
  for _, child in ipairs(children[ARGV[doomed[cursor] + 1]] or {}) do
    if not taken[child] then
      taken[child] = true
      table.insert(doomed, child)
    end
  end
  cursor = cursor + 1
end
local out = {}
for _, i in ipairs(doomed) do
  local record = KEYS[i + 1]
  table.insert(out, ARGV[i + 1])
  table.insert(out, redis.call('HGET', record, 'lookup') or '')
  redis.call('DEL', record)
  redis.call('ZREM', KEYS[1], ARGV[i + 1])
end
return out
`);

/** KEYS: index entry. ARGV: value, TTL ms. Claims a free entry for an insert in
 * progress. Returns 1 when claimed (or already ours: a re-sent call), 0 when another
 * insert's claim holds it, or the value of a committed entry, for the caller to check. */
export const claimEntry = defineScript(`
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then return 1 end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if redis.call('PTTL', KEYS[1]) == -1 then return current end
return 0
`);

/** KEYS: index entry. ARGV: expected committed value, value, TTL ms. Claims a dangling
 * committed entry, if it still holds what the caller checked. Returns 1 when claimed. */
export const takeOverEntry = defineScript(`
local current = redis.call('GET', KEYS[1])
if current == ARGV[2] then return 1 end
if current ~= ARGV[1] or redis.call('PTTL', KEYS[1]) ~= -1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`);

/** KEYS: index entry. ARGV: value. Makes this insert's claim permanent. Returns 1, or 0
 * when the claim has expired (and perhaps been claimed by another insert). */
export const commitEntry = defineScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
`);

/** KEYS: index entry. ARGV: value. Gives up this insert's claim, and nobody else's. */
export const releaseEntry = defineScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`);

/** KEYS: index entry. ARGV: value prefix (`<owner> <id> `). Deletes the entry when it
 * points at that owner's id, whatever its nonce: delete knows the record, not the insert. */
export const dropEntry = defineScript(`
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, #ARGV[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`);

/**
 * The max-merge shared by both lastUsedAt scripts: only an existing record is touched, so
 * a late batch never recreates a deleted key, and only a later time is written.
 */
const mergeLastUsed = `
local function merge(record, at)
  if redis.call('EXISTS', record) == 0 then return end
  local current = redis.call('HGET', record, 'lastUsedAt')
  if not current or tonumber(current) < tonumber(at) then
    redis.call('HSET', record, 'lastUsedAt', at)
  end
end
`;

/** Cluster path, one call per owner slot. KEYS: records. ARGV: ms per record. */
export const lastUsedMerge = defineScript(`${mergeLastUsed}
for i, record in ipairs(KEYS) do merge(record, ARGV[i]) end
return 0
`);

/**
 * Single-server path: the whole batch in one call. KEYS: id indexes. ARGV: record key
 * prefix, record infix, then ms per id. It resolves each id to its owner's record and so
 * touches keys it was not given, which only a single server allows; a Cluster client
 * resolves the owners first and runs `lastUsedMerge` per slot instead. An index value is
 * split on its single spaces, exactly as `parseIndexEntry` splits it: not on `%s`, which
 * also matches the tab or newline of an owner id that an older version wrote raw.
 */
export const lastUsedResolve = defineScript(`${mergeLastUsed}
for i, index in ipairs(KEYS) do
  local value = redis.call('GET', index)
  local owner, id = nil, nil
  if value then owner, id = string.match(value, '^([^ ]+) ([^ ]+) [^ ]+$') end
  if owner then merge(ARGV[1] .. owner .. ARGV[2] .. id, ARGV[i + 2]) end
end
return 0
`);

/** The client commands the store uses; both `Redis` and `Cluster` have them. */
export type RedisClient = Redis | Cluster;

/**
 * EVALSHA, falling back to EVAL when the server has not seen the script yet (first use, or
 * after a restart or SCRIPT FLUSH). Done here rather than with `defineCommand` so that the
 * host's client gets no methods added to it. On a Cluster, ioredis routes by the first key.
 */
export async function runScript(
  client: RedisClient,
  { lua, sha }: Script,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await client.evalsha(sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    return await client.eval(lua, keys.length, ...keys, ...args);
  }
}

/**
 * Several calls of one script in a single pipeline: one round trip. Calls the server
 * answers with NOSCRIPT are sent again as EVAL; only idempotent scripts may go through
 * here, since a pipeline is not a transaction and the other calls have run.
 */
export async function runScripts(
  client: RedisClient,
  script: Script,
  calls: readonly { keys: readonly string[]; args: readonly (string | number)[] }[],
): Promise<void> {
  const first = calls[0];
  if (!first) return;
  if (calls.length === 1) {
    await runScript(client, script, first.keys, first.args);
    return;
  }
  const pipeline = client.pipeline();
  for (const { keys, args } of calls) pipeline.evalsha(script.sha, keys.length, ...keys, ...args);
  const replies = (await pipeline.exec()) ?? [];
  const failed = replies.flatMap(([error], i) => (error ? [{ error, call: calls[i] }] : []));
  const fatal = failed.find(({ error }) => !error.message.startsWith('NOSCRIPT'));
  if (fatal) throw fatal.error;
  await Promise.all(
    failed.map(({ call }) =>
      call ? client.eval(script.lua, call.keys.length, ...call.keys, ...call.args) : null,
    ),
  );
}
