/**
 * What the bench parent (load generator) and a server child say to each other over IPC.
 * Load goes over loopback HTTP; IPC only carries setup and the server's own measurements,
 * so reading them never competes with the load for the server's sockets.
 */
import type { StoredKey } from '@keyward/core';

export type Framework = 'fastify' | 'express' | 'hono';
export type StoreKind = 'memory' | 'postgres' | 'redis';

/** Handed to a server child in `BENCH_SERVER_CONFIG` (JSON). */
export interface ServerConfig {
  framework: Framework;
  store: StoreKind;
  /** Postgres: connection string and the bench's own table (created by the parent). */
  databaseUrl?: string;
  table?: string;
  /** Redis: URL and the bench's own namespace (cleaned by the parent). */
  redisUrl?: string;
  namespace?: string;
  /** SHA-256 (base64) of the keys the `ideal` guard accepts. */
  idealDigests: string[];
}

/** The server's view of one measured interval. */
export interface ProbeReport {
  /** Event loop delay over the interval (perf_hooks.monitorEventLoopDelay), in ms. */
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** Server CPU time over wall time: 1 means one core busy all the time. */
  cpuShare: number;
  /** Server CPU time over the interval, in µs. */
  cpuMicros: number;
  stats: { cachedKeys: number; refusedKeys: number; pendingLastUsed: number; argon2Queue: number };
  /** Lease calls to the store (claims and returns of windows and credits) over the
   * interval. */
  leaseCalls: number;
}

export type Request =
  | { id: number; op: 'seed'; records: StoredKey[] }
  | { id: number; op: 'argon2-times'; samples: number }
  | { id: number; op: 'argon2-in-requests' }
  | { id: number; op: 'probe-start' }
  | { id: number; op: 'probe-stop' }
  | { id: number; op: 'close' };

export type Reply =
  | { type: 'listening'; url: string }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: string };
