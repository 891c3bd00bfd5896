import {
  type InvalidationBus,
  type LogBusSettings,
  type LogEntry,
  type LogRead,
  logBus,
  logRetention,
} from '@keyward/core';
import type { Cluster, Redis } from 'ioredis';
import { defineScript, runScript } from './scripts.js';

export interface RedisStreamBusOptions extends LogBusSettings {
  /** Appends and reads the log (non-blocking commands). Any client will do, the store's
   * included; a Cluster too. */
  publisher: Redis | Cluster;
  /**
   * A connection of its own (e.g. `client.duplicate()`) for the blocking XREAD that wakes
   * the reader when an entry arrives; it can run nothing else meanwhile. The host opens
   * and closes it. Give it `enableOfflineQueue: false` (or a small
   * `maxRetriesPerRequest`) so that a lost connection fails the wait at once.
   */
  subscriber: Redis | Cluster;
  /**
   * Names the log: the stream is `{<key>}:log` and its entry counter `{<key>}:seq`, one
   * hash tag, so both sit in one slot of a Cluster. Instances sharing a store share it;
   * apps sharing a Redis use one each. @default 'keyward:invalidation'
   */
  key?: string;
}

/** Entries read at once; a longer backlog is read in several batches. */
const READ_BATCH = 1000;

/**
 * KEYS: stream, counter. ARGV: payload, max entries, oldest id kept ('' for none).
 * Each entry carries `n`, its number from the counter: numbers are consecutive, so a reader
 * whose next entry is not its last number + 1 knows entries were trimmed before it read
 * them (trimming does not show in XINFO's max-deleted-entry-id).
 */
const appendEntry = defineScript(`
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'n', n, 'e', ARGV[1])
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3]) end
return n
`);

/** KEYS: stream, counter. ARGV: position ('0-0' for the start), batch size. Returns the
 * counter and the entries after the position, in one step. */
const readEntries = defineScript(`
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {redis.call('GET', KEYS[2]) or '0', entries}
`);

/** KEYS: stream, counter. The newest entry's id and the counter. */
const readHead = defineScript(`
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if newest[1] then id = newest[1][1] end
return {redis.call('GET', KEYS[2]) or '0', id}
`);

type RawEntry = [string, string[]];

/**
 * An invalidation bus over a Redis Stream (docs/design.md, "Invalidation log"), standalone
 * or Cluster (Redis 6.2 or later): each event is an entry, each instance remembers the last
 * one it applied and reads what follows (XRANGE, woken by a blocking XREAD), so a
 * connection lost for a while loses no event. Appends trim the stream by length and age.
 */
export function redisStreamBus(options: RedisStreamBusOptions): InvalidationBus {
  const { publisher, subscriber, onError } = options;
  const name = options.key ?? 'keyward:invalidation';
  if (name.length === 0 || /[{}]/.test(name)) {
    throw new TypeError(
      `keyward: key must be non-empty, without braces; got ${JSON.stringify(name)}.`,
    );
  }
  const { maxEntries, maxAgeMs } = logRetention(options);
  const keys = [`{${name}}:log`, `{${name}}:seq`];
  const stream = keys[0] as string;

  return logBus(
    {
      async append(payload) {
        const oldest = `${Math.max(0, Date.now() - maxAgeMs)}-0`;
        await runScript(publisher, appendEntry, keys, [payload, maxEntries, oldest]);
      },

      // A position is `<stream id> <entry number>`: where to read from, and the number of
      // the last entry seen, which tells a gap.
      async head() {
        const [counter, id] = (await runScript(publisher, readHead, keys, [])) as [string, string];
        return `${id} ${counter}`;
      },

      async read(position): Promise<LogRead> {
        const [after = '0-0', seenText = '0'] = position.split(' ');
        const seen = Number(seenText);
        const [counterText, raw] = (await runScript(publisher, readEntries, keys, [
          after,
          READ_BATCH,
        ])) as [string, RawEntry[]];
        const counter = Number(counterText);
        const entries: LogEntry[] = [];
        let firstNumber = 0;
        for (const [id, fields] of raw) {
          if (firstNumber === 0) firstNumber = Number(field(fields, 'n'));
          entries.push({ position: id, payload: field(fields, 'e') ?? '' });
        }
        // Entries between the last one seen and the first one read were trimmed; none read
        // while the counter moved on, the same; a counter below what was seen: the log was
        // deleted and started again.
        const lost =
          counter < seen || (entries.length > 0 ? firstNumber > seen + 1 : counter > seen);
        const lastNumber = entries.length > 0 ? firstNumber + entries.length - 1 : counter;
        return {
          entries,
          lost,
          position: `${entries.at(-1)?.position ?? after} ${lastNumber}`,
          more: entries.length === READ_BATCH,
        };
      },

      async wait(position, waitMs) {
        // Returns as soon as an entry after `position` exists, or after waitMs. Entries
        // that directly follow the position (by number) are handed over as they are.
        const [after = '0-0', seenText = '0'] = position.split(' ');
        const reply = (await subscriber.xread(
          'COUNT',
          READ_BATCH,
          'BLOCK',
          waitMs,
          'STREAMS',
          stream,
          after,
        )) as [string, RawEntry[]][] | null;
        let seen = Number(seenText);
        let at = after;
        const entries: LogEntry[] = [];
        for (const [id, fields] of reply?.[0]?.[1] ?? []) {
          if (Number(field(fields, 'n')) !== seen + 1) break;
          seen++;
          at = id;
          entries.push({ position: id, payload: field(fields, 'e') ?? '' });
        }
        return entries.length > 0 ? { entries, position: `${at} ${seen}` } : undefined;
      },
    },
    {
      name: `"${stream}"`,
      onError,
      heartbeatMs: options.heartbeatMs,
      timeoutMs: options.timeoutMs,
    },
  );
}

function field(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
