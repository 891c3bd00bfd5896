/**
 * Where the store keeps what, in one place so the store, its Lua scripts and the tests
 * agree. For namespace `ns`:
 *
 * | key                         | type   | holds                                        | slot        |
 * |-----------------------------|--------|----------------------------------------------|-------------|
 * | `ns:{o:<owner>}:ids`        | zset   | the owner's key ids, scored by createdAt ms  | owner's tag |
 * | `ns:{o:<owner>}:k:<id>`     | hash   | one key record (every StoredKey field)       | owner's tag |
 * | `ns:l:<lookup>`             | string | lookup entry: `<owner> <id> <nonce>`         | its own     |
 * | `ns:i:<id>`                 | string | id entry: `<owner> <id> <nonce>`             | its own     |
 *
 * A record's v2 fields: `expiresAt` (ms, empty for never), `scopes` (JSON array),
 * `metadata` (JSON object text), `createdBy` (empty for none). A record written before they
 * existed lacks them and reads as never expiring, scopes `["*"]`, metadata `{}`, no creator.
 * The leak mark: `leakedAt` (ms) and `leakSource`, both absent until a leak is confirmed.
 *
 * Rate limits and credits (docs/design.md, "Rate limits and credits") are fields of the same
 * hash, so a lease claim is one script on the record's own slot, and deleting the record
 * deletes its counts: `rateLimit` (JSON), `creditsRemaining`, `creditsRefillAmount`,
 * `creditsRefillEvery`, `creditsStrict` ('1'/'0'), `creditsResetAt` (ms), and the lease
 * counters `windowStart` (ms) and `windowUsed`. A record without them has no limit and no
 * credits.
 *
 * Everything scoped to an owner (the cap, list, update, delete, deleteTree, the record
 * writes of roll, lastUsedAt) lives under the owner's hash tag, so one Lua script on one
 * slot does it atomically, on a Cluster too. Find-by-lookup has no owner, and ids are unique across owners (the id entry also lets a
 * lastUsedAt batch, which names ids only, find each owner), so those two index entries
 * cannot share the owner's slot; each lands wherever its own name hashes. The tag sits
 * after the namespace so that `ns:*` matches every key of a namespace in one SCAN.
 */

/** Letters, digits and `_ . : -`: nothing that opens or closes a hash tag, nothing that a
 * SCAN pattern would read as a wildcard. */
const NAMESPACE = /^[A-Za-z0-9_.:-]{1,64}$/;

export function assertNamespace(namespace: string): void {
  if (!NAMESPACE.test(namespace)) {
    throw new TypeError(
      `keyward: the Redis store's namespace must be 1 to 64 letters, digits, "_", ".", ":" or "-"; got ${JSON.stringify(namespace)}.`,
    );
  }
}

/**
 * Owner ids and key ids come from the host and may hold any character. Escaped:
 * - `}` keeps an owner id from closing the hash tag early (two owners would then share
 *   keys), `{` keeps the first `{` ours;
 * - every whitespace and control character (ASCII, C1 and Unicode: tab, newline, NBSP,
 *   U+2028…) keeps the index values `<owner> <id> <nonce>` splittable on one space by both
 *   readers, the store's and its Lua script's, and keeps key names printable;
 * - a lone surrogate, which the UTF-8 encoding on the wire would turn into U+FFFD, merging
 *   two owners' keys;
 * - `%`, so that the mapping stays one-to-one.
 * A code unit up to U+00FF becomes `%XX`, a larger one `%uXXXX` (fixed widths, and `u` is
 * no hex digit, so `unescapePart` reads every name back unambiguously). Ordinary ids
 * (`key_…`, UUIDs) pass unchanged, and so does everything the first layout (which escaped
 * only `%`, `{`, `}` and the space, the same way) wrote for other ids: see migrate.ts.
 */
export function escapePart(part: string): string {
  return part.replace(ESCAPED, (c) => {
    const code = c.charCodeAt(0);
    const hex = code.toString(16).toUpperCase();
    return code <= 0xff ? `%${hex.padStart(2, '0')}` : `%u${hex.padStart(4, '0')}`;
  });
}

/** What `escapePart` escapes: `%{}`, whitespace (`\s`), controls (`\p{Cc}`) and lone
 * surrogates (what the `u` flag leaves as a single unit in the surrogate range). */
const ESCAPED = /[%{}\s\p{Cc}\p{Cs}]/gu;

/** The inverse of `escapePart`, and of the first layout's escaping (a subset of it). */
export function unescapePart(part: string): string {
  return part.replace(/%u([0-9A-F]{4})|%([0-9A-F]{2})/g, (_, wide: string, narrow: string) =>
    String.fromCharCode(Number.parseInt(wide ?? narrow, 16)),
  );
}

export interface KeyLayout {
  readonly namespace: string;
  /** Pattern of every key of this namespace, for SCAN. */
  readonly pattern: string;
  /** Record keys are `recordPrefix + <escaped owner> + RECORD_INFIX + <escaped id>`; the
   * standalone lastUsedAt script rebuilds them from an id index value. */
  readonly recordPrefix: string;
  ownerIds(escapedOwner: string): string;
  record(escapedOwner: string, escapedId: string): string;
  lookupIndex(lookup: string): string;
  idIndex(id: string): string;
}

export const RECORD_INFIX = '}:k:';

export function keyLayout(namespace: string): KeyLayout {
  assertNamespace(namespace);
  const recordPrefix = `${namespace}:{o:`;
  return {
    namespace,
    pattern: `${namespace}:*`,
    recordPrefix,
    ownerIds: (owner) => `${recordPrefix}${owner}}:ids`,
    record: (owner, id) => `${recordPrefix}${owner}${RECORD_INFIX}${id}`,
    lookupIndex: (lookup) => `${namespace}:l:${escapePart(lookup)}`,
    idIndex: (id) => `${namespace}:i:${escapePart(id)}`,
  };
}

/** What both index entries point at. The nonce makes each insert's value its own, so a
 * compare-and-delete never removes another insert's entry. */
export interface IndexEntry {
  owner: string;
  id: string;
}

export function formatIndexEntry(owner: string, id: string, nonce: string): string {
  return `${owner} ${id} ${nonce}`;
}

/** `null` for a value this store did not write: such an entry resolves to nothing. Split
 * on the one space exactly as the `lastUsedResolve` script does, so both readers agree on
 * every value (the escaped parts hold no space). */
export function parseIndexEntry(value: string): IndexEntry | null {
  const [owner, id, nonce, extra] = value.split(' ');
  if (!owner || !id || !nonce || extra !== undefined) return null;
  return { owner, id };
}
