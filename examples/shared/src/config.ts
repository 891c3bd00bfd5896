import { resolve } from 'node:path';
import { type HttpOptions, readGitHubPublicKeys } from '@keyward/core';

export type StoreKind = 'memory' | 'pglite' | 'postgres' | 'redis';
const storeKinds: readonly StoreKind[] = ['memory', 'pglite', 'postgres', 'redis'];
export type BusKind = 'pubsub' | 'log';
const busKinds: readonly BusKind[] = ['pubsub', 'log'];

export interface ExampleConfig {
  port: number;
  host: string;
  store: StoreKind;
  /** KEYWARD_BUS, on Postgres and Redis: `pubsub` (LISTEN/NOTIFY, Redis pub/sub; the
   * default) or `log` (the replayable invalidation log: a revocation anywhere is refused
   * here within maxStalenessMs, 5 s, or cached keys are re-checked against the store). */
  bus: BusKind;
  /** Where PGlite keeps its files. */
  dataDir: string;
  databaseUrl: string;
  redisUrl: string;
  /** Accounts that get a `bootstrap` key on start if they hold none. */
  accounts: string[];
  /** KEYWARD_DIAGNOSTICS=1: serve process diagnostics on a loopback port of their own, for
   * `pnpm soak` (see diagnostics.ts). Off by default. */
  diagnostics: boolean;
  /** KEYWARD_SHUTDOWN_GRACE_MS: on SIGINT/SIGTERM, how long requests under way may take to
   * finish before every connection still open is cut (idle ones are closed at once). A
   * client that sends half a request and waits would otherwise hold the shutdown open
   * until Node's headersTimeout, and an orchestrator would kill the process before the
   * last lastUsedAt values are written. Default 2000. */
  shutdownGraceMs: number;
  /** The leak routes: `POST /v1/api-keys/report-leak` always, and GitHub's alert route
   * `POST /v1/api-keys/leaks/github` when GITHUB_SECRET_SCANNING_KEYS holds the public keys
   * (the JSON https://api.github.com/meta/public_keys/secret_scanning returns, or a
   * locally made key pair's in that shape, to try it end to end). */
  leaks: NonNullable<HttpOptions['leaks']>;
}

/** The examples' settings, from the environment, checked once with clear messages. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): ExampleConfig {
  const port = Number(env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be a port number (0–65535); got ${JSON.stringify(env.PORT)}.`);
  }
  const store = (env.KEYWARD_STORE ?? 'pglite') as StoreKind;
  if (!storeKinds.includes(store)) {
    throw new Error(
      `KEYWARD_STORE must be one of ${storeKinds.join(', ')}; got ${JSON.stringify(env.KEYWARD_STORE)}.`,
    );
  }
  const bus = (env.KEYWARD_BUS ?? 'pubsub') as BusKind;
  if (!busKinds.includes(bus)) {
    throw new Error(
      `KEYWARD_BUS must be one of ${busKinds.join(', ')}; got ${JSON.stringify(env.KEYWARD_BUS)}.`,
    );
  }
  const shutdownGraceMs = Number(env.KEYWARD_SHUTDOWN_GRACE_MS ?? 2000);
  if (!Number.isInteger(shutdownGraceMs) || shutdownGraceMs < 0) {
    throw new Error(
      `KEYWARD_SHUTDOWN_GRACE_MS must be a whole number of milliseconds (0 or more); got ${JSON.stringify(env.KEYWARD_SHUTDOWN_GRACE_MS)}.`,
    );
  }
  const accounts = (env.DEMO_ACCOUNTS ?? 'demo')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a.length > 0);
  const githubKeys = env.GITHUB_SECRET_SCANNING_KEYS?.trim();
  if (githubKeys) {
    try {
      readGitHubPublicKeys(githubKeys);
    } catch (error) {
      throw new Error(`GITHUB_SECRET_SCANNING_KEYS: ${(error as Error).message}`);
    }
  }
  return {
    port,
    host: env.HOST ?? '127.0.0.1',
    store,
    bus,
    dataDir: resolve(env.KEYWARD_DATA_DIR ?? '.data/pglite'),
    databaseUrl: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    accounts,
    diagnostics: env.KEYWARD_DIAGNOSTICS === '1',
    shutdownGraceMs,
    leaks: {
      reportRoute: true,
      ...(githubKeys ? { github: { publicKeys: githubKeys } } : {}),
    },
  };
}
