import { serviceUnavailable } from '@keyward/testing';
import { Redis } from 'ioredis';
import pg from 'pg';

// The servers every suite, the examples and the bench use: one naming scheme,
// DATABASE_URL and REDIS_URL, with the local defaults the project's machines and CI run.
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Whether the Postgres server answers; says so loudly (or fails, in CI) when not. */
export async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch (error) {
    serviceUnavailable(`Postgres (${DATABASE_URL})`, error);
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Whether the Redis server answers; says so loudly (or fails, in CI) when not. */
export async function redisReachable(): Promise<boolean> {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
  });
  // The socket's error (ECONNREFUSED…) says more than the rejection ("Connection is closed").
  let socketError: unknown;
  client.on('error', (error) => {
    socketError ??= error;
  });
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch (error) {
    serviceUnavailable(`Redis (${REDIS_URL})`, socketError ?? error);
    return false;
  } finally {
    client.disconnect();
  }
}
