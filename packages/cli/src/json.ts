import type { ApiKey, CreatedApiKey } from '@keyward/core';

/** A key as the HTTP API shows it: same fields, same order, timestamps as ISO 8601 UTC. */
export function keyJson(key: ApiKey | CreatedApiKey) {
  return {
    id: key.id,
    name: key.name,
    ...('rawKey' in key ? { rawKey: key.rawKey } : {}),
    keyPrefix: key.keyPrefix,
    keySuffix: key.keySuffix,
    lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
    createdAt: key.createdAt.toISOString(),
    expiresAt: key.expiresAt?.toISOString() ?? null,
    scopes: key.scopes,
    metadata: key.metadata,
    createdBy: key.createdBy,
  };
}

/** What list and scan show of a key: its first and last characters, never the secret. */
export function masked(key: { keyPrefix: string; keySuffix: string }): string {
  return `${key.keyPrefix}…${key.keySuffix}`;
}
