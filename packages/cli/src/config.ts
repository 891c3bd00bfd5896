import { resolve } from 'node:path';
import { DEFAULT_KEY_PREFIX, isValidKeyPrefix } from '@keyward/core';
import { usageError } from './errors.js';

export type StoreKind = 'pglite' | 'postgres' | 'redis';
const storeKinds: readonly StoreKind[] = ['pglite', 'postgres', 'redis'];

/** Where the keys are: read as the examples read it, from the environment, each setting
 * overridable by the flag of the same name. */
export interface StoreConfig {
  store: StoreKind;
  /** Where PGlite keeps its files. */
  dataDir: string;
  databaseUrl: string;
  redisUrl: string;
  /** Prefix of the keys the host app issues and accepts. */
  prefix: string;
}

/** The flags every command that opens the store takes, for util.parseArgs. */
export const storeOptions = {
  store: { type: 'string' },
  'database-url': { type: 'string' },
  'redis-url': { type: 'string' },
  'data-dir': { type: 'string' },
  prefix: { type: 'string' },
} as const;

export const storeHelp = `Store (flag, else environment variable, else default):
  --store <kind>          KEYWARD_STORE: pglite (default), postgres or redis
  --database-url <url>    DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
  --redis-url <url>       REDIS_URL (default redis://127.0.0.1:6379)
  --data-dir <dir>        KEYWARD_DATA_DIR: PGlite's folder (default .data/pglite); one
                          process at a time: stop the app before using the CLI on it
  --prefix <prefix>       KEYWARD_PREFIX: the key prefix your app uses (default rep)`;

export function readStoreConfig(
  flags: { [K in keyof typeof storeOptions]?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): StoreConfig {
  const store = flags.store ?? env.KEYWARD_STORE ?? 'pglite';
  if (store === 'memory') {
    throw usageError(
      'the memory store lives inside one process, so keys made here would vanish on exit: set KEYWARD_STORE (or --store) to pglite, postgres or redis.',
    );
  }
  if (!storeKinds.includes(store as StoreKind)) {
    throw usageError(
      `KEYWARD_STORE (or --store) must be one of ${storeKinds.join(', ')}; got ${JSON.stringify(store)}.`,
    );
  }
  const prefix = flags.prefix ?? env.KEYWARD_PREFIX ?? DEFAULT_KEY_PREFIX;
  if (!isValidKeyPrefix(prefix)) {
    throw usageError(
      `KEYWARD_PREFIX (or --prefix) must match [a-z][a-z0-9]{1,15}, as your app's prefix option; got ${JSON.stringify(prefix)}.`,
    );
  }
  return {
    store: store as StoreKind,
    dataDir: resolve(flags['data-dir'] ?? env.KEYWARD_DATA_DIR ?? '.data/pglite'),
    databaseUrl:
      flags['database-url'] ?? env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: flags['redis-url'] ?? env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    prefix,
  };
}

/** A connection URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}
