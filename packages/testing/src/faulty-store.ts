import type { KeyStore } from '@keyward/core';

export interface FaultyStore extends KeyStore {
  /** While true, every call rejects as if the store's server were unreachable. */
  failing: boolean;
}

/** Wraps a store so a test can make it fail on demand, like a database that went away. */
export function faultyStore(inner: KeyStore): FaultyStore {
  const wrapper = { failing: false } as FaultyStore;
  for (const method of [
    'insert',
    'findByLookup',
    'listByOwner',
    'update',
    'delete',
    'deleteTree',
    'roll',
    'recordLastUsed',
  ] as const) {
    // biome-ignore lint/suspicious/noExplicitAny: forwards each method's own arguments.
    (wrapper as any)[method] = (...args: unknown[]) => {
      if (wrapper.failing) return Promise.reject(new Error('connect ECONNREFUSED (injected)'));
      // biome-ignore lint/suspicious/noExplicitAny: see above.
      return (inner as any)[method](...args);
    };
  }
  return wrapper;
}
