/**
 * Key material for the bench, made in the parent: real keys hashed with the service's
 * default argon2 parameters (so a cold verification costs what it costs in production),
 * and generators of well-formed impostors for the flood. Raw keys stay in this process
 * and on the wire; they are never printed.
 */
import {
  type Argon2Options,
  DEFAULT_KEY_PREFIX,
  generateKey,
  generateKeyId,
  hashKey,
  keyChecksum,
  LOOKUP_LENGTH,
  randomBase62,
  SECRET_LENGTH,
  type StoredKey,
} from '@keyward/core';

export interface BenchKey {
  rawKey: string;
  lookup: string;
  record: StoredKey;
}

export interface KeySpread {
  /** How many owners the keys are spread over, round robin. @default 16 */
  owners?: number;
  /** The `i`-th key's name. @default `bench key ${i}` */
  name?: (i: number) => string;
}

/** `count` keys with their store records, spread over a few owners. */
export async function makeKeys(
  count: number,
  argon2: Argon2Options,
  { owners = 16, name = (i) => `bench key ${i}` }: KeySpread = {},
): Promise<BenchKey[]> {
  const createdAt = new Date();
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const generated = generateKey(DEFAULT_KEY_PREFIX);
      const record: StoredKey = {
        id: generateKeyId(),
        ownerId: `bench_owner_${i % owners}`,
        name: name(i),
        lookup: generated.lookup,
        hash: await hashKey(generated.rawKey, argon2),
        keyPrefix: generated.keyPrefix,
        keySuffix: generated.keySuffix,
        createdAt,
        lastUsedAt: null,
        expiresAt: null,
        scopes: ['*'],
        metadata: {},
        createdBy: null,
        rateLimit: null,
        credits: null,
        leakedAt: null,
        leakSource: null,
      };
      return { rawKey: generated.rawKey, lookup: generated.lookup, record };
    }),
  );
}

/** A well-formed key (valid checksum) for `lookup` with a fresh random secret. */
export function impostorKey(lookup: string = randomBase62(LOOKUP_LENGTH)): string {
  const secret = randomBase62(SECRET_LENGTH);
  return `${DEFAULT_KEY_PREFIX}_${lookup}${secret}${keyChecksum(DEFAULT_KEY_PREFIX, lookup, secret)}`;
}
