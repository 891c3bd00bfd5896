/** What list and scan show of a key: its first and last characters, never the secret. */
export function masked(key: { keyPrefix: string; keySuffix: string }): string {
  return `${key.keyPrefix}…${key.keySuffix}`;
}
