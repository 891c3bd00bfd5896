/**
 * What the core test files share: a key service with cheap argon2 that is closed after
 * each test, and a key with a real lookup part but a wrong secret. Not shipped: only src/
 * is built.
 */
// @keyward/testing depends on @keyward/core, so core cannot declare it back (a cycle); the
// workspace root declares it, and the one copy of the cheap settings lives there.
import { CHEAP_ARGON2 } from '@keyward/testing';
import { afterEach } from 'vitest';
import { generateKey, keyChecksum } from '../src/key-format.js';
import { memoryStore } from '../src/memory-store.js';
import { createKeyService, type KeyService } from '../src/service.js';

const services: KeyService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close().catch(() => {})));
});

/** A service on a fresh memory store unless told otherwise, closed after the test. */
export function service(options: Partial<Parameters<typeof createKeyService>[0]> = {}) {
  const s = createKeyService({ store: memoryStore(), argon2: CHEAP_ARGON2, ...options });
  services.push(s);
  return s;
}

/** A well-formed key (valid checksum) with `rawKey`'s lookup part and another secret. */
export function wrongSecretFor(rawKey: string): string {
  const lookup = rawKey.slice(4, 16);
  const secret = generateKey().rawKey.slice(16, 48);
  return `rep_${lookup}${secret}${keyChecksum('rep', lookup, secret)}`;
}
