import type { StoredKey } from '@keyward/core';
import type { Kysely } from 'kysely';

/** The table a store uses when the host names none. */
export const DEFAULT_TABLE = 'keyward_api_keys';

/** Options shared by the store and the migrations: both must agree on the table. */
export interface TableOptions {
  /**
   * Name of the table holding the keys, a plain lower-case identifier (use the connection's
   * `search_path` to place it in another schema). The constraint and index names derive from
   * it, which is how collisions are told apart, so it is limited to 45 characters: the longest
   * derived name must fit Postgres's 63-byte identifiers.
   * @default 'keyward_api_keys'
   */
  table?: string;
  /**
   * Name of the invalidation log's table (`postgresLogBus`), a plain lower-case identifier
   * of at most 45 characters. Instances sharing a store share it.
   * @default 'keyward_invalidation_log'
   */
  logTable?: string;
}

/** The log table a bus and the migrations use when the host names none. */
export const DEFAULT_LOG_TABLE = 'keyward_invalidation_log';

/** The table and the names of its constraints, derived in one place so the DDL and the
 * error mapping cannot drift apart. */
export interface TableNames {
  table: string;
  primaryKey: string;
  lookupIndex: string;
  ownerIndex: string;
  createdByIndex: string;
  logTable: string;
}

export function tableNames(options: TableOptions = {}): TableNames {
  const table = options.table ?? DEFAULT_TABLE;
  if (!/^[a-z_][a-z0-9_]{0,44}$/.test(table)) {
    throw new TypeError(
      `keyward: table must be a lower-case identifier of at most 45 characters ([a-z_][a-z0-9_]*), got ${JSON.stringify(table)}.`,
    );
  }
  const logTable = options.logTable ?? DEFAULT_LOG_TABLE;
  if (!/^[a-z_][a-z0-9_]{0,44}$/.test(logTable)) {
    throw new TypeError(
      `keyward: logTable must be a lower-case identifier of at most 45 characters ([a-z_][a-z0-9_]*), got ${JSON.stringify(logTable)}.`,
    );
  }
  return {
    table,
    logTable,
    primaryKey: `${table}_pkey`,
    lookupIndex: `${table}_lookup_key`,
    ownerIndex: `${table}_owner_created_idx`,
    createdByIndex: `${table}_created_by_idx`,
  };
}

/** One row as the drivers return it. */
export interface KeyRow {
  id: string;
  owner_id: string;
  name: string;
  lookup: string;
  hash: string;
  key_prefix: string;
  key_suffix: string;
  created_at: Date;
  last_used_at: Date | null;
  expires_at: Date | null;
  scopes: string[];
  /** A `json` column: the drivers parse it, with the host's key order kept. */
  metadata: StoredKey['metadata'];
  created_by: string | null;
  rate_limit: number | null;
  rate_window_sec: number | null;
  credits_remaining: number | null;
  credits_refill_amount: number | null;
  credits_refill_every: 'day' | 'month' | null;
  credits_strict: boolean;
  /** bigint: epoch ms; the drivers return it as text. */
  credits_reset_at: string | number | null;
  leaked_at: Date | null;
  leak_source: string | null;
}

/** The database as the store sees it: whatever the table is called, it holds `KeyRow`s. */
export type KeywardTables = Record<string, KeyRow>;

export const KEY_COLUMNS = [
  'id',
  'owner_id',
  'name',
  'lookup',
  'hash',
  'key_prefix',
  'key_suffix',
  'created_at',
  'last_used_at',
  'expires_at',
  'scopes',
  'metadata',
  'created_by',
  'rate_limit',
  'rate_window_sec',
  'credits_remaining',
  'credits_refill_amount',
  'credits_refill_every',
  'credits_strict',
  'credits_reset_at',
  'leaked_at',
  'leak_source',
] as const satisfies readonly (keyof KeyRow)[];

/**
 * Any host's Kysely: the host's schema type knows nothing of our table, and need not.
 */
// biome-ignore lint/suspicious/noExplicitAny: Kysely<any> is how Kysely spells "a database of any schema"; a narrower type would reject the host's own Kysely<DB>.
export type AnyKysely = Kysely<any>;
