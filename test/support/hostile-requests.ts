/**
 * Hostile requests for the management API, as fast-check arbitraries, and a model of what
 * the rules (the README's API section) say each one must get. A generated request is
 * symbolic ("the main key with its 7th character changed", "a target's id, partly
 * percent-encoded"): it is turned into bytes against the keys of the moment only when it
 * is sent, so a counterexample that fast-check prints names no raw key, and stays
 * meaningful across runs.
 */
import {
  BASE62_ALPHABET,
  type ErrorCode,
  errorCodes,
  keyChecksum,
  LOOKUP_LENGTH,
  SECRET_LENGTH,
} from '@keyward/core';
import fc from 'fast-check';

export const MOUNT = '/v1/api-keys';
export const MAX_BODY_BYTES = 16 * 1024;
export const PREFIX = 'rep';

/** Keys of the account with fewer scopes than the main key's `*`, made by the host's
 * code: one that may only read the account's keys, one with no management scope at all,
 * and one that may manage keys but grant no scope it lacks. */
export const SCOPED = {
  reader: ['api_keys:read'],
  orders: ['orders:read'],
  writer: ['api_keys:write', 'orders:read'],
} as const satisfies Record<string, readonly string[]>;
export type ScopedName = keyof typeof SCOPED;
export const SCOPED_NAMES = Object.keys(SCOPED) as ScopedName[];

/** The keys the fuzz presents as valid, and what each may do. */
export type Presenter = 'main' | ScopedName;
export const PRESENTER_SCOPES: Record<Presenter, readonly string[]> = { main: ['*'], ...SCOPED };

/** The keys a batch is made against; the fuzz keeps them alive between batches. */
export interface World {
  ownerId: string;
  /** The key with every scope (`*`). */
  main: KnownKey;
  scoped: Record<ScopedName, KnownKey>;
  /** A key of the account that has expired (still stored, still listed). */
  expired: KnownKey;
  /** More keys of the same account: ids to rename and revoke, lookups to guess secrets for. */
  targets: KnownKey[];
  /** Another account's key. */
  foreign: KnownKey;
  /** A key of the account that was revoked. */
  revoked: KnownKey;
}

export interface KnownKey {
  id: string;
  rawKey: string;
}

export const TARGET_COUNT = 5;

// ---------------------------------------------------------------------------------------
// The symbolic request
// ---------------------------------------------------------------------------------------

export const METHODS = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'PUT', 'OPTIONS', 'TRACE'];

export type KeyCase =
  | { kind: 'absent' }
  | { kind: 'blank'; value: string }
  | { kind: 'valid'; pad: string }
  | { kind: 'scoped'; which: ScopedName; pad: string }
  | { kind: 'expired' }
  | { kind: 'unknown'; lookup: string; secret: string }
  | { kind: 'wrongSecret'; target: number; secret: string }
  | { kind: 'revoked' }
  | { kind: 'foreignLookup'; secret: string }
  | { kind: 'oneCharChanged'; at: number; shift: number }
  | { kind: 'truncated'; drop: number }
  | { kind: 'extended'; extra: string }
  | { kind: 'recased' }
  | { kind: 'otherPrefix'; prefix: string }
  | { kind: 'text'; value: string }
  | { kind: 'obsText'; bytes: number[] }
  | { kind: 'huge'; length: number; fill: string }
  | { kind: 'repeated'; values: KeyCase[] };

export type IdCase =
  | { kind: 'main' | 'foreign' | 'revoked' | 'expired'; encode: number }
  | { kind: 'scoped'; which: ScopedName; encode: number }
  | { kind: 'target'; index: number; encode: number }
  | { kind: 'keyLike'; body: string }
  | { kind: 'text'; value: string }
  | { kind: 'ascii'; value: string }
  | { kind: 'literal'; value: string }
  | { kind: 'long'; length: number; fill: string };

export interface PathCase {
  absoluteForm: boolean;
  segments: IdCase[];
  trailingSlash: boolean;
  query: string | null;
  fragment: string | null;
}

export type ContentTypeCase =
  | { kind: 'absent' }
  | { kind: 'value'; value: string; json: boolean }
  | { kind: 'repeated'; values: string[] };

/** An instant relative to the moment the request is sent, written in one of several ways
 * (some of them not an ISO 8601 instant with a zone). */
export class Instant {
  constructor(
    readonly offsetSeconds: number,
    readonly style: InstantStyle,
  ) {}
}
export type InstantStyle =
  | 'iso'
  | 'seconds'
  | 'minutes'
  | 'micros'
  | 'plus0530'
  | 'minus0800'
  | 'dateOnly'
  | 'noZone'
  | 'space'
  | 'feb29'
  | 'feb30'
  | 'month13'
  | 'hour25';

export type BodyCase =
  | { kind: 'none' }
  | { kind: 'object'; members: Array<[string, unknown]> }
  | { kind: 'text'; text: string }
  | { kind: 'bytes'; bytes: number[] }
  | { kind: 'deep'; depth: number; shape: 'array' | 'object' }
  | { kind: 'huge'; size: number; json: boolean }
  | { kind: 'atLimit'; name: string };

export interface HostileRequest {
  method: string;
  path: PathCase;
  keyHeaderName: string;
  key: KeyCase;
  contentType: ContentTypeCase;
  body: BodyCase;
  /** How a body is framed: Content-Length, or chunked in pieces of this size. */
  chunkSize: number | null;
  /** Raw socket (one connection per request) instead of node:http's keep-alive client. */
  raw: boolean;
}

// ---------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------

/** Any code point, lone surrogates included. fast-check's own `unit: 'binary'` does the
 * same, but builds a table of all 1.1 million code points first: two seconds per run. */
const anyCodePoint = fc.integer({ min: 0, max: 0x10ffff }).map((c) => String.fromCodePoint(c));

/** What Node's parser accepts in a request target. */
const printableAscii = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));

const base62 = (length: number) =>
  fc.string({ unit: fc.constantFrom(...BASE62_ALPHABET), minLength: length, maxLength: length });

/** Text a header can carry: no C0 control but HTAB, no DEL (Node's parser answers 400 to
 * those before any framework sees the request; limits.test.ts covers that). */
const headerSafeText = (maxLength: number) =>
  fc
    .oneof(fc.string({ unit: 'grapheme', maxLength }), fc.string({ unit: anyCodePoint, maxLength }))
    .map((s) => [...s].filter(isHeaderSafe).join(''));

function isHeaderSafe(char: string): boolean {
  const code = char.codePointAt(0) ?? 0;
  return code === 0x09 || (code >= 0x20 && code !== 0x7f);
}

const keyCaseLeaf: fc.Arbitrary<KeyCase> = fc.oneof(
  {
    weight: 55,
    arbitrary: fc.constantFrom('', ' ', '\t \t').map((pad) => ({ kind: 'valid', pad }) as const),
  },
  {
    weight: 30,
    arbitrary: fc.record({
      kind: fc.constant('scoped' as const),
      // The writer most: it is the one whose creates and rolls meet the grant check.
      which: fc.constantFrom<ScopedName>('reader', 'orders', 'writer', 'writer'),
      pad: fc.constantFrom('', ' '),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ kind: 'expired' } as const) },
  { weight: 6, arbitrary: fc.constant({ kind: 'absent' } as const) },
  {
    weight: 3,
    arbitrary: fc
      .constantFrom('', ' ', '\t', '  \t ')
      .map((value) => ({ kind: 'blank', value }) as const),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('unknown' as const),
      lookup: base62(LOOKUP_LENGTH),
      secret: base62(SECRET_LENGTH),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('wrongSecret' as const),
      target: fc.nat(TARGET_COUNT - 1),
      secret: base62(SECRET_LENGTH),
    }),
  },
  { weight: 4, arbitrary: fc.constant({ kind: 'revoked' } as const) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('foreignLookup' as const),
      secret: base62(SECRET_LENGTH),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('oneCharChanged' as const),
      at: fc.nat(200),
      shift: fc.integer({ min: 1, max: 61 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('truncated' as const),
      drop: fc.integer({ min: 1, max: 53 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('extended' as const),
      extra: fc.string({ minLength: 1, maxLength: 4 }).filter((s) => s.trim() !== ''),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'recased' } as const) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('otherPrefix' as const),
      prefix: fc.constantFrom('sk', 'ghp', 'rep2', 'REP', 'rep_rep'),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ kind: fc.constant('text' as const), value: headerSafeText(80) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('obsText' as const),
      bytes: fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 60 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('huge' as const),
      length: fc.integer({ min: 1_000, max: 7_000 }),
      fill: fc.constantFrom('a', 'rep_', 'é', '0Az'),
    }),
  },
);

export const keyCase: fc.Arbitrary<KeyCase> = fc.oneof(
  { weight: 19, arbitrary: keyCaseLeaf },
  {
    weight: 1,
    arbitrary: fc
      .array(
        keyCaseLeaf.filter((k) => k.kind !== 'absent' && k.kind !== 'huge'),
        { minLength: 2, maxLength: 3 },
      )
      .map((values) => ({ kind: 'repeated', values }) as const),
  },
);

const idCase: fc.Arbitrary<IdCase> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constantFrom(
        'main' as const,
        'foreign' as const,
        'revoked' as const,
        'expired' as const,
      ),
      encode: fc.nat(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('scoped' as const),
      which: fc.constantFrom(...SCOPED_NAMES),
      encode: fc.nat(),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('target' as const),
      index: fc.nat(TARGET_COUNT - 1),
      encode: fc.nat(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('keyLike' as const),
      body: fc.string({ unit: fc.constantFrom(...BASE62_ALPHABET), minLength: 1, maxLength: 70 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('text' as const),
      value: fc.string({ unit: 'grapheme', maxLength: 40 }),
    }),
  },
  // Everything Node's parser lets through in a request target, but the three that end a
  // segment; '%' here makes malformed escapes of all kinds.
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('ascii' as const),
      value: fc.string({
        unit: printableAscii.filter((c) => !'/?#'.includes(c)),
        minLength: 1,
        maxLength: 30,
      }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('literal' as const),
      value: fc.constantFrom(
        '',
        '.',
        '..',
        '%2e%2e',
        '%2E.',
        '.%2E',
        '%',
        '%Z',
        '%ZZ',
        '%%',
        '%E0%A4%A',
        '%C0%AF',
        '%FF',
        '%00',
        '%2F',
        'a%2Fb',
        '..%2F..%2Fetc%2Fpasswd',
        '%2e%2e%2f',
        'key_%',
        '__proto__',
        'constructor',
        'prototype',
        '%5C..%5C',
        'key_a%2F..',
        'roll',
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('long' as const),
      length: fc.integer({ min: 101, max: 6_000 }),
      fill: fc.constantFrom('a', '%41', 'key_', '.', '%'),
    }),
  },
);

const pathCase: fc.Arbitrary<PathCase> = fc.record({
  absoluteForm: fc.oneof(
    { weight: 1, arbitrary: fc.constant(true) },
    { weight: 12, arbitrary: fc.constant(false) },
  ),
  segments: fc.oneof(
    { weight: 7, arbitrary: fc.constant<IdCase[]>([]) },
    { weight: 6, arbitrary: idCase.map((id) => [id]) },
    {
      weight: 4,
      arbitrary: idCase.map((id) => [id, { kind: 'literal', value: 'roll' } as IdCase]),
    },
    { weight: 2, arbitrary: fc.array(idCase, { minLength: 2, maxLength: 4 }) },
  ),
  trailingSlash: fc.boolean(),
  query: fc.option(
    fc.oneof(
      // Parameters with percent-encoded text. (fc.webQueryParameters() would do, but costs
      // more than a second to build.)
      fc
        .array(
          fc.tuple(fc.string({ maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 12 })),
          {
            maxLength: 4,
          },
        )
        .map((pairs) =>
          pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&'),
        ),
      // DELETE's cascade flag: its two values, and what is neither.
      fc.constantFrom(
        'cascade=true',
        'cascade=true',
        'cascade=false',
        'x=1&cascade=true',
        'cascade=%74rue',
        '%63ascade=true',
        'Cascade=true',
        'cascade=TRUE',
        'cascade=1',
        'cascade=',
        'cascade',
        'cascade=true+',
        'cascade=true&cascade=true',
        'cascade=true&cascade=false',
      ),
      fc.constantFrom(
        '',
        'x=%ZZ',
        '__proto__[name]=x&constructor[prototype][name]=y',
        'a=1&a=2&a[]=3',
        '%',
      ),
      fc.string({ unit: printableAscii.filter((c) => c !== '#'), maxLength: 1_000 }),
    ),
    { freq: 4 },
  ),
  fragment: fc.option(fc.string({ unit: printableAscii, maxLength: 20 }), { freq: 12 }),
});

const contentTypeCase: fc.Arbitrary<ContentTypeCase> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'application/json;charset=UTF-8',
        'Application/JSON',
        'application/json ; charset="utf-8"',
        'application/json; foo=bar',
        'application/json; charset',
        'application/json;',
      )
      .map((value) => ({ kind: 'value', value, json: true }) as const),
  },
  {
    weight: 5,
    arbitrary: fc
      .constantFrom(
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/json; charset=latin1',
        'application/json; charset=utf-16',
        'application/json; charset=',
        'application/jsonp',
        'application/vnd.api+json',
        'text/json',
        'json',
        '',
        ';;;',
        '*/*',
        'application/json, text/plain',
        'application/json\tx',
        'undefined',
      )
      .map((value) => ({ kind: 'value', value, json: false }) as const),
  },
  {
    weight: 2,
    arbitrary: fc
      .string({
        unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
        maxLength: 60,
      })
      .filter((value) => !/^\s*application\/json/i.test(value))
      .map((value) => ({ kind: 'value', value, json: false }) as const),
  },
  { weight: 3, arbitrary: fc.constant({ kind: 'absent' } as const) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.constantFrom('application/json', 'text/plain'), { minLength: 2, maxLength: 2 })
      .map((values) => ({ kind: 'repeated', values }) as const),
  },
);

const nameValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: anyCodePoint, maxLength: 20 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 95, maxLength: 110 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '',
      '   ',
      ' \n\t ',
      'a'.repeat(100),
      'a'.repeat(101),
      `${'🔑'.repeat(100)}`,
      `${'🔑'.repeat(101)}`,
      ` ${'b'.repeat(100)} `,
      'x\u0000y',
      'x\u007fy',
      'x\u0085y',
      'x\u200by',
      '\ud800',
      'a\udc00b',
      'e\u0301',
      '<script>',
      'Robert"); DROP TABLE keys;--',
    ),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.string(), { maxLength: 3 }),
      fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }),
    ),
  },
);

const pollutionKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'name',
  'toString',
  'hasOwnProperty',
  'valueOf',
);

const YEAR_SECONDS = 365 * 86_400;
const validInstantStyle = fc.constantFrom<InstantStyle>(
  'iso',
  'seconds',
  'minutes',
  'micros',
  'plus0530',
  'minus0800',
);

/** `expiresAt`: far enough from now and from the 10-year limit that the time a request
 * takes cannot change the answer. */
const instantValue: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.integer({ min: 3_600, max: 9 * YEAR_SECONDS }), validInstantStyle)
      .map(([offset, style]) => new Instant(offset, style)),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: -20 * YEAR_SECONDS, max: -60 }), validInstantStyle)
      .map(([offset, style]) => new Instant(offset, style)),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 3_656 * 86_400, max: 100 * YEAR_SECONDS }), validInstantStyle)
      .map(([offset, style]) => new Instant(offset, style)),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.integer({ min: 3_600, max: 9 * YEAR_SECONDS }),
        fc.constantFrom<InstantStyle>(
          'dateOnly',
          'noZone',
          'space',
          'feb29',
          'feb30',
          'month13',
          'hour25',
        ),
      )
      .map(([offset, style]) => new Instant(offset, style)),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<unknown>(
      null,
      '',
      'now',
      'tomorrow',
      1_900_000_000_000,
      true,
      {},
      [],
    ),
  },
);

/** `expiresIn`: create's 60..315,360,000 and roll's 0..604,800, their edges, and what is
 * not whole seconds. (Never 1..58: a key may not expire while its batch runs.) */
const expiresInValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 60, max: 604_800 }) },
  { weight: 2, arbitrary: fc.integer({ min: 60, max: 315_360_000 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(0, 59, 60, 86_400, 604_800, 604_801, 315_360_000, 315_360_001),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom<unknown>(-1, -60, 1.5, 3600.5, '3600', null, true, 1e21, [60], {}),
  },
);

const scopeName = fc.constantFrom(
  '*',
  'api_keys:read',
  'api_keys:write',
  'orders:read',
  'orders:write',
  'Orders:read',
  'billing',
  'A.b-c_d:e',
  'x'.repeat(64),
);

const scopesValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.uniqueArray(scopeName, { minLength: 1, maxLength: 4 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom<unknown>(
      Array.from({ length: 50 }, (_, i) => `s${i}`),
      Array.from({ length: 51 }, (_, i) => `s${i}`),
      [],
      ['orders:read', 'orders:read'],
      ['*', '*'],
      ['x'.repeat(65)],
      ['a b'],
      ['é'],
      [''],
      ['api_keys:*'],
      ['**'],
      [1],
      [null],
      'api_keys:read',
      null,
      {},
    ),
  },
  { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 6 }), { minLength: 1, maxLength: 3 }) },
);

const metadataValue: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), {
      maxKeys: 4,
    }),
  },
  // Around 2,048 bytes as compact JSON, in one-, two- and four-byte characters.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 2_030, max: 2_045 }), fc.constantFrom('x', 'é', '🔑'))
      .map(([bytes, c]) => ({ pad: c.repeat(Math.floor(bytes / Buffer.byteLength(c))) })),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom<unknown>(
      { a: { b: { c: 1 } } },
      { a: { b: { c: {} } } },
      { a: [[1]] },
      { a: [[[]]] },
      { a: [{}] },
      { a: [{ b: [] }] },
      {},
      JSON.parse('{"__proto__":{"polluted":1}}'),
      { constructor: { prototype: { polluted: 1 } } },
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom<unknown>([], null, 'x', 1, true, [{}]) },
);

/** A value, or (more often) no member at all. */
const sometimes = (value: fc.Arbitrary<unknown>, weight: number) =>
  fc.oneof(
    { weight: 10 - weight, arbitrary: fc.constant(undefined) },
    { weight, arbitrary: value },
  );

const lifecycleMembers: fc.Arbitrary<Array<[string, unknown]>> = fc
  .tuple(
    sometimes(instantValue, 3),
    sometimes(expiresInValue, 3),
    sometimes(scopesValue, 3),
    sometimes(metadataValue, 3),
  )
  .map((values) =>
    (['expiresAt', 'expiresIn', 'scopes', 'metadata'] as const)
      .map((field, i): [string, unknown] => [field, values[i]])
      .filter(([, value]) => value !== undefined),
  );

/** A body of valid-looking fields only: a usable name, half the time, and each lifecycle
 * field, valid or not, more often than in the hostile objects. */
const lifecycleBody: fc.Arbitrary<BodyCase> = fc
  .tuple(
    fc.option(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 30 }), {
      freq: 3,
      nil: undefined,
    }),
    fc.tuple(
      sometimes(instantValue, 4),
      sometimes(expiresInValue, 3),
      sometimes(scopesValue, 6),
      sometimes(metadataValue, 5),
    ),
  )
  .map(([name, values]) => {
    const members: Array<[string, unknown]> = (
      ['expiresAt', 'expiresIn', 'scopes', 'metadata'] as const
    )
      .map((field, i): [string, unknown] => [field, values[i]])
      .filter(([, value]) => value !== undefined);
    if (name !== undefined) members.unshift(['name', name]);
    return { kind: 'object', members } as const;
  });

const bodyCase: fc.Arbitrary<BodyCase> = fc.oneof(
  { weight: 10, arbitrary: lifecycleBody },
  { weight: 4, arbitrary: fc.constant({ kind: 'none' } as const) },
  {
    weight: 18,
    arbitrary: fc
      .tuple(
        fc.option(nameValue, { freq: 4, nil: undefined }),
        fc.array(
          fc.tuple(
            fc.oneof(pollutionKey, fc.string({ maxLength: 8 })),
            fc.jsonValue({ maxDepth: 2 }),
          ),
          { maxLength: 3 },
        ),
        fc.array(fc.tuple(pollutionKey, fc.record({ name: fc.string({ maxLength: 8 }) })), {
          maxLength: 2,
        }),
        lifecycleMembers,
      )
      .map(([name, extra, polluting, lifecycle]) => {
        const members: Array<[string, unknown]> = [...polluting, ...lifecycle, ...extra];
        if (name !== undefined) members.splice(members.length ? 1 : 0, 0, ['name', name]);
        return { kind: 'object', members } as const;
      }),
  },
  {
    weight: 3,
    arbitrary: fc.json({ maxDepth: 3 }).map((text) => ({ kind: 'text', text }) as const),
  },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        '',
        '{',
        '{"name":',
        '{"name":"x",}',
        "{'name':'x'}",
        '{"name":"x"}garbage',
        'null',
        '[]',
        '"name"',
        '{"name":"x"',
        '\ufeff{"name":"bom"}',
        '{"__proto__":{"name":"p"}}',
        '{"constructor":{"prototype":{"name":"p"}}}',
        '{"name":"a","name":"b"}',
        '{"name":"a\\u0000b"}',
        '{"name":"\\ud83d"}',
        'NaN',
        '1e999999',
        // Numbers JSON writes in other ways: 60.0 and 6e1 are whole seconds, -0 is not 60+.
        '{"name":"n","expiresIn":60.0}',
        '{"name":"n","expiresIn":6e1}',
        '{"name":"n","expiresIn":-0}',
        '{"name":"n","expiresIn":3.6e3,"scopes":["orders:read"]}',
        // The last of a repeated member counts, here too.
        '{"name":"n","metadata":{"a":1,"a":{"b":{"c":{}}}}}',
        '{"name":"n","metadata":{"a":{"b":{"c":{}}},"a":1}}',
        '{"name":"n","scopes":["*"],"scopes":[]}',
        '{"name":"n","metadata":{"s":"\\ud800","z":"\\u0000"}}',
        '{"expiresIn":0}',
        '{"expiresIn":604800.0,"scopes":["api_keys:read"]}',
      )
      .map((text) => ({ kind: 'text', text }) as const),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.nat(255), { maxLength: 200 })
      .map((bytes) => ({ kind: 'bytes', bytes }) as const),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('deep' as const),
      depth: fc.integer({ min: 100, max: 8_000 }),
      shape: fc.constantFrom('array' as const, 'object' as const),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('huge' as const),
      size: fc.integer({ min: MAX_BODY_BYTES + 1, max: 40_000 }),
      json: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('atLimit' as const),
      name: fc.string({ minLength: 1, maxLength: 10 }).filter((s) => s.trim() !== ''),
    }),
  },
);

/** Mostly a method the path's route allows, so most requests get past the 405. */
const methodFor = (path: PathCase) =>
  fc.oneof(
    {
      weight: 3,
      arbitrary:
        path.segments.length === 0
          ? fc.constantFrom('GET', 'HEAD', 'POST', 'POST')
          : path.segments.length === 2
            ? fc.constant('POST')
            : fc.constantFrom('PATCH', 'DELETE'),
    },
    { weight: 1, arbitrary: fc.constantFrom(...METHODS) },
  );

const anyRequest: fc.Arbitrary<HostileRequest> = pathCase.chain((path) =>
  fc.record({
    method: methodFor(path),
    path: fc.constant(path),
    keyHeaderName: fc.constantFrom('X-API-Key', 'x-api-key', 'X-API-KEY', 'x-Api-kEY'),
    key: keyCase,
    contentType: contentTypeCase,
    body: bodyCase,
    chunkSize: fc.option(fc.integer({ min: 1, max: 8_192 }), { freq: 3 }),
    raw: fc.oneof(
      { weight: 1, arbitrary: fc.constant(true) },
      { weight: 3, arbitrary: fc.constant(false) },
    ),
  }),
);

/** A key id of the world, as is. */
const worldId: fc.Arbitrary<IdCase> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('target' as const),
      index: fc.nat(TARGET_COUNT - 1),
      encode: fc.constant(1),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('scoped' as const),
      which: fc.constantFrom(...SCOPED_NAMES),
      encode: fc.constant(1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      // The expired key most: a PATCH of its expiry is always a later one (400).
      kind: fc.constantFrom(
        'main' as const,
        'expired' as const,
        'expired' as const,
        'foreign' as const,
      ),
      encode: fc.constant(1),
    }),
  },
);

/** A well-formed lifecycle request by a key that may manage keys: most hostile requests
 * stop at a check before the one that reads the lifecycle fields, and these reach it. */
const lifecycleRequest: fc.Arbitrary<HostileRequest> = fc
  .tuple(
    fc.constantFrom('create', 'patch', 'roll', 'delete'),
    worldId,
    lifecycleBody,
    fc.constantFrom<KeyCase>(
      { kind: 'valid', pad: '' },
      { kind: 'scoped', which: 'writer', pad: '' },
    ),
    fc.constantFrom('cascade=true', 'cascade=true', 'cascade=false', 'cascade=yes', null),
    fc.nat(4),
  )
  .map(([action, id, generated, key, query, keepScopes]): HostileRequest => {
    // A PATCH with scopes is refused whatever else it holds: mostly, leave them out.
    const body: BodyCase =
      action === 'patch' && generated.kind === 'object' && keepScopes > 0
        ? { kind: 'object', members: generated.members.filter(([k]) => k !== 'scopes') }
        : generated;
    return {
      method: action === 'patch' ? 'PATCH' : action === 'delete' ? 'DELETE' : 'POST',
      path: {
        absoluteForm: false,
        segments:
          action === 'create'
            ? []
            : action === 'roll'
              ? [id, { kind: 'literal', value: 'roll' }]
              : [id],
        trailingSlash: false,
        query: action === 'delete' ? query : null,
        fragment: null,
      },
      keyHeaderName: 'X-API-Key',
      key,
      contentType: { kind: 'value', value: 'application/json', json: true },
      body: action === 'delete' ? { kind: 'none' } : body,
      chunkSize: null,
      raw: false,
    };
  });

/** A roll with no grace of a key the fuzz presents: refused at once, so the checks after
 * the batch see a presented key expired (and still cached, had the roll not said so). */
const rollAwayRequest: fc.Arbitrary<HostileRequest> = fc
  .oneof(
    fc.constant<IdCase>({ kind: 'main', encode: 1 }),
    fc.record({
      kind: fc.constant('scoped' as const),
      which: fc.constantFrom(...SCOPED_NAMES),
      encode: fc.constant(1),
    }),
  )
  .map(
    (id): HostileRequest => ({
      method: 'POST',
      path: {
        absoluteForm: false,
        segments: [id, { kind: 'literal', value: 'roll' }],
        trailingSlash: false,
        query: null,
        fragment: null,
      },
      keyHeaderName: 'X-API-Key',
      key: { kind: 'valid', pad: '' },
      contentType: { kind: 'value', value: 'application/json', json: true },
      body: { kind: 'text', text: '{"expiresIn":0}' },
      chunkSize: null,
      raw: false,
    }),
  );

export const hostileRequest: fc.Arbitrary<HostileRequest> = fc.oneof(
  { weight: 160, arbitrary: anyRequest },
  { weight: 40, arbitrary: lifecycleRequest },
  { weight: 1, arbitrary: rollAwayRequest },
);

// ---------------------------------------------------------------------------------------
// From symbols to bytes
// ---------------------------------------------------------------------------------------

/** What goes on the wire, and what the model reads. */
export interface WireRequest {
  method: string;
  target: string;
  headers: Array<[string, Buffer]>;
  body: Buffer | undefined;
  chunkSize: number | null;
  raw: boolean;
  /** The path segments below the mount, as sent. */
  segments: string[];
  /** The key header's values, as sent. */
  keyValues: Buffer[];
  /** Whether the Content-Type the server reads (the first one) names UTF-8 JSON. */
  jsonContentType: boolean;
}

/** Longest request target we send: with the largest key header it stays well under Node's
 * 16 KiB header limit, which limits.test.ts covers on its own. */
const TARGET_BUDGET = 7_000;

/** `now`: the time the lifecycle fields' instants are written against. */
export function toWire(
  req: HostileRequest,
  world: World,
  origin: string,
  now: number,
): WireRequest {
  const fixed = req.path.segments.map((id) => (id.kind === 'long' ? null : segmentOf(id, world)));
  const longCount = fixed.filter((s) => s === null).length;
  const room = TARGET_BUDGET - fixed.reduce((n, s) => n + (s?.length ?? 0) + 1, MOUNT.length);
  const segments = req.path.segments.map((id, i) => {
    if (id.kind !== 'long') return fixed[i] as string;
    return fill(id.fill, Math.max(0, Math.min(id.length, Math.floor(room / longCount) - 1)));
  });
  let target = MOUNT + segments.map((s) => `/${s}`).join('') + (req.path.trailingSlash ? '/' : '');
  if (req.path.query !== null) target += `?${req.path.query}`;
  if (req.path.fragment !== null) target += `#${req.path.fragment}`;
  if (req.path.absoluteForm) target = origin + target;

  const body = bodyOf(req.body, now);
  const headers: Array<[string, Buffer]> = [];
  const keyValues = keyValuesOf(req.key, world);
  for (const value of keyValues) headers.push([req.keyHeaderName, value]);
  const contentTypes =
    req.contentType.kind === 'absent'
      ? []
      : req.contentType.kind === 'value'
        ? [req.contentType.value]
        : req.contentType.values;
  for (const value of contentTypes) headers.push(['Content-Type', Buffer.from(value, 'latin1')]);
  // Node keeps the first of repeated Content-Type headers and drops the others.
  const first = contentTypes[0];
  const jsonContentType =
    req.contentType.kind === 'value'
      ? req.contentType.json
      : first !== undefined && first === 'application/json';

  return {
    method: req.method,
    target,
    headers,
    body,
    // At most 64 chunks: client and server share one process, and a 40 KB body in 1-byte
    // chunks costs both sides more than the rest of a batch together.
    chunkSize:
      req.chunkSize === null || body === undefined
        ? req.chunkSize
        : Math.max(req.chunkSize, Math.ceil(body.byteLength / 64)),
    raw: req.raw,
    segments,
    keyValues,
    jsonContentType,
  };
}

function fill(pattern: string, length: number): string {
  return pattern.repeat(Math.ceil(length / pattern.length)).slice(0, length);
}

function segmentOf(id: IdCase, world: World): string {
  switch (id.kind) {
    case 'main':
    case 'foreign':
    case 'revoked':
    case 'expired':
      return percentEncodeSome(world[id.kind].id, id.encode);
    case 'scoped':
      return percentEncodeSome(world.scoped[id.which].id, id.encode);
    case 'target':
      return percentEncodeSome((world.targets[id.index] as KnownKey).id, id.encode);
    case 'keyLike':
      return `key_${id.body}`;
    case 'text':
      return encodeURIComponent(id.value.toWellFormed());
    case 'ascii':
    case 'literal':
      return id.value;
    case 'long':
      return fill(id.fill, id.length);
  }
}

/** A third of the time, percent-encodes the characters `mask` picks: the segment still
 * names the same id once decoded. */
function percentEncodeSome(id: string, mask: number): string {
  if (mask % 3 !== 0) return id;
  return [...id]
    .map((c, i) => {
      if (((mask >> (i % 30)) & 1) === 0) return c;
      const hex = c.charCodeAt(0).toString(16).padStart(2, '0');
      return `%${i % 2 ? hex.toUpperCase() : hex}`;
    })
    .join('');
}

function lookupOf(rawKey: string): string {
  return rawKey.slice(PREFIX.length + 1, PREFIX.length + 1 + LOOKUP_LENGTH);
}

function checksummed(prefix: string, lookup: string, secret: string): string {
  return `${prefix}_${lookup}${secret}${keyChecksum(prefix, lookup, secret)}`;
}

function keyValuesOf(key: KeyCase, world: World): Buffer[] {
  const main = world.main.rawKey;
  switch (key.kind) {
    case 'absent':
      return [];
    case 'blank':
      return [Buffer.from(key.value)];
    case 'valid':
      return [Buffer.from(`${key.pad}${main}${key.pad}`)];
    case 'scoped':
      return [Buffer.from(`${key.pad}${world.scoped[key.which].rawKey}${key.pad}`)];
    case 'expired':
      return [Buffer.from(world.expired.rawKey)];
    case 'unknown':
      return [Buffer.from(checksummed(PREFIX, key.lookup, key.secret))];
    case 'wrongSecret': {
      const target = world.targets[key.target] as KnownKey;
      return [Buffer.from(checksummed(PREFIX, lookupOf(target.rawKey), key.secret))];
    }
    case 'revoked':
      return [Buffer.from(world.revoked.rawKey)];
    case 'foreignLookup':
      return [Buffer.from(checksummed(PREFIX, lookupOf(world.foreign.rawKey), key.secret))];
    case 'oneCharChanged': {
      const at = key.at % main.length;
      const index = BASE62_ALPHABET.indexOf(main[at] as string);
      const replacement = BASE62_ALPHABET[(Math.max(index, 0) + key.shift) % 62] as string;
      return [Buffer.from(main.slice(0, at) + replacement + main.slice(at + 1))];
    }
    case 'truncated':
      return [Buffer.from(main.slice(0, main.length - key.drop))];
    case 'extended':
      return [Buffer.from(main + key.extra)];
    case 'recased':
      return [
        Buffer.from(
          [...main]
            .map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()))
            .join(''),
        ),
      ];
    case 'otherPrefix': {
      const body = main.slice(PREFIX.length + 1);
      return [
        Buffer.from(
          checksummed(
            key.prefix,
            body.slice(0, LOOKUP_LENGTH),
            body.slice(LOOKUP_LENGTH, LOOKUP_LENGTH + SECRET_LENGTH),
          ),
        ),
      ];
    }
    case 'text':
      return [Buffer.from(key.value)];
    case 'obsText':
      return [Buffer.from(key.bytes)];
    case 'huge':
      return [Buffer.from(fill(key.fill, key.length)).subarray(0, key.length)];
    case 'repeated':
      return key.values.flatMap((value) => keyValuesOf(value, world));
  }
}

function bodyOf(body: BodyCase, now: number): Buffer | undefined {
  switch (body.kind) {
    case 'none':
      return undefined;
    case 'object':
      return Buffer.from(
        `{${body.members
          .map(([k, v]) => {
            const value = v instanceof Instant ? formatInstant(v, now) : v;
            return `${JSON.stringify(k)}:${JSON.stringify(value) ?? 'null'}`;
          })
          .join(',')}}`,
      );
    case 'text':
      return Buffer.from(body.text);
    case 'bytes':
      return Buffer.from(body.bytes);
    case 'deep':
      return Buffer.from(
        body.shape === 'array'
          ? `${'['.repeat(body.depth)}${']'.repeat(body.depth)}`
          : `${'{"a":'.repeat(body.depth)}1${'}'.repeat(body.depth)}`,
      );
    case 'huge':
      return Buffer.from(
        body.json ? `{"name":"${'x'.repeat(body.size - 11)}"}` : 'z'.repeat(body.size),
      );
    case 'atLimit': {
      const head = `{"name":${JSON.stringify(body.name)},"pad":"`;
      const padding = MAX_BODY_BYTES - Buffer.byteLength(head) - 2;
      return Buffer.from(`${head}${'p'.repeat(padding)}"}`);
    }
  }
}

function formatInstant(instant: Instant, now: number): string {
  const at = now + instant.offsetSeconds * 1000;
  const iso = new Date(at).toISOString();
  const shifted = (minutes: number) => new Date(at + minutes * 60_000).toISOString().slice(0, 23);
  const year = iso.slice(0, 4);
  switch (instant.style) {
    case 'iso':
      return iso;
    case 'seconds':
      return `${iso.slice(0, 19)}Z`;
    case 'minutes':
      return `${iso.slice(0, 16)}Z`;
    case 'micros':
      return `${iso.slice(0, 23)}000Z`;
    case 'plus0530':
      return `${shifted(330)}+05:30`;
    case 'minus0800':
      return `${shifted(-480)}-08:00`;
    case 'dateOnly':
      return iso.slice(0, 10);
    case 'noZone':
      return iso.slice(0, 19);
    case 'space':
      return `${iso.slice(0, 10)} ${iso.slice(11)}`;
    case 'feb29':
      // Real in a leap year only.
      return `${year}-02-29T12:00:00Z`;
    case 'feb30':
      return `${year}-02-30T00:00:00Z`;
    case 'month13':
      return `${year}-13-01T00:00:00Z`;
    case 'hour25':
      return `${iso.slice(0, 10)}T25:00:00Z`;
  }
}

// ---------------------------------------------------------------------------------------
// The model: what the README's API section says the answer is, written from those rules
// ---------------------------------------------------------------------------------------

export type Route =
  | { shape: 'collection' }
  | { shape: 'item'; id: string }
  | { shape: 'roll'; id: string };

/** The routes: the mount (optionally with one trailing slash) is the collection, one more
 * non-empty segment (optionally with a trailing slash) is an item, an item's segment
 * followed by `roll` is its roll, anything else is unknown. The id is the segment,
 * percent-decoded. */
export function routeOf(wire: WireRequest, trailingSlash: boolean): Route | null {
  const segments = trailingSlash ? [...wire.segments, ''] : [...wire.segments];
  if (segments.at(-1) === '') segments.pop();
  if (segments.length === 0) return { shape: 'collection' };
  const [first, second] = segments;
  if (segments.length === 1 && first) return { shape: 'item', id: decodeOrEmpty(first) };
  if (segments.length === 2 && first && second === 'roll') {
    return { shape: 'roll', id: decodeOrEmpty(first) };
  }
  return null;
}

function decodeOrEmpty(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}

export const ALLOW = {
  collection: 'GET, HEAD, POST',
  item: 'PATCH, DELETE',
  roll: 'POST',
} as const;

export type KeyVerdict = 'missing' | 'invalid' | Presenter;

/** Node trims spaces and tabs around a header value and joins repeated ones with ", ". */
export function keyVerdict(wire: WireRequest, world: World): KeyVerdict {
  if (wire.keyValues.length === 0) return 'missing';
  if (wire.keyValues.length > 1) return 'invalid';
  const value = (wire.keyValues[0] as Buffer).toString('latin1').trim();
  if (value === '') return 'missing';
  if (value === world.main.rawKey) return 'main';
  return SCOPED_NAMES.find((name) => world.scoped[name].rawKey === value) ?? 'invalid';
}

/** A body's fields, as the model read them (only those it read, only when all are
 * valid). Times in milliseconds. */
export interface Fields {
  name?: string;
  expiresAt?: number;
  expiresIn?: number;
  scopes?: string[];
  metadata?: Record<string, unknown>;
}

/** Whether a request carries a body: a Content-Length above 0, or chunked. */
export function bodyPresent(wire: WireRequest): boolean {
  return wire.body !== undefined && (wire.chunkSize !== null || wire.body.byteLength > 0);
}

/** For a body-reading request whose key holds the route's scope: the first check that
 * fails (media type, size, JSON, object, fields), or `ok` with the fields read. Roll reads
 * a body only when one is sent. */
export function bodyVerdict(
  wire: WireRequest,
  route: Route,
  now: number,
): { verdict: ErrorCode | 'ok'; fields: Fields | null } {
  const fail = (verdict: ErrorCode) => ({ verdict, fields: null });
  if (route.shape === 'roll' && !bodyPresent(wire)) return { verdict: 'ok', fields: {} };
  if (!wire.jsonContentType) return fail('unsupported_media_type');
  const bytes = wire.body ?? Buffer.alloc(0);
  if (bytes.byteLength > MAX_BODY_BYTES) return fail('payload_too_large');
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return fail('invalid_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('invalid_request');
  }
  const body = value as Record<string, unknown>;
  const has = (field: string) => Object.hasOwn(body, field);
  const fields: Fields = {};
  const invalid = fail('invalid_request');

  if (has('name') || route.shape === 'collection') {
    if (route.shape === 'collection' || route.shape === 'item') {
      if (!isAcceptableName(body.name)) return invalid;
      fields.name = (body.name as string).trim();
    }
  }
  if (has('metadata') && route.shape !== 'roll') {
    if (!isAcceptableMetadata(body.metadata)) return invalid;
    fields.metadata = body.metadata as Record<string, unknown>;
  }
  if (route.shape === 'collection') {
    if (has('expiresAt') && has('expiresIn')) return invalid;
    if (has('expiresIn')) {
      if (!isWholeNumberIn(body.expiresIn, 60, 315_360_000)) return invalid;
      fields.expiresIn = body.expiresIn as number;
    }
  }
  if (has('expiresAt') && route.shape !== 'roll') {
    const at = futureInstant(body.expiresAt, now);
    if (at === null) return invalid;
    fields.expiresAt = at;
  }
  if (has('scopes') && route.shape === 'item') return invalid;
  if (has('scopes') && !isScopeList(body.scopes)) return invalid;
  if (has('scopes')) fields.scopes = body.scopes as string[];
  if (route.shape === 'roll' && has('expiresIn')) {
    if (!isWholeNumberIn(body.expiresIn, 0, 604_800)) return invalid;
    fields.expiresIn = body.expiresIn as number;
  }
  if (
    route.shape === 'item' &&
    fields.name === undefined &&
    fields.metadata === undefined &&
    fields.expiresAt === undefined
  ) {
    return invalid;
  }
  return { verdict: 'ok', fields };
}

/** A string; trimmed, not empty, at most 100 code points, no control characters, no format
 * characters or line/paragraph separators, at least one visible character (and, as Unicode
 * text, no lone surrogate). */
function isAcceptableName(name: unknown): boolean {
  if (typeof name !== 'string') return false;
  const trimmed = name.trim();
  return (
    trimmed !== '' &&
    trimmed.isWellFormed() &&
    !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(trimmed) &&
    /[\p{L}\p{N}\p{P}\p{S}]/u.test(trimmed.replace(/[\u115F\u1160\u2800\u3164\uFFA0]/gu, '')) &&
    [...trimmed].length <= 100
  );
}

function isWholeNumberIn(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** 1 to 50 unique strings, each `*` or 1 to 64 of `[A-Za-z0-9_.:-]`. */
function isScopeList(value: unknown): boolean {
  return (
    Array.isArray(value) &&
    value.length >= 1 &&
    value.length <= 50 &&
    new Set(value).size === value.length &&
    value.every((s) => typeof s === 'string' && (s === '*' || /^[A-Za-z0-9_.:-]{1,64}$/.test(s)))
  );
}

/** A JSON object, at most 3 levels deep (the object is the first; arrays count), at most
 * 2,048 bytes as compact JSON in UTF-8. */
function isAcceptableMetadata(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const depth = (v: unknown): number =>
    typeof v === 'object' && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depth)) : 0;
  return depth(value) <= 3 && Buffer.byteLength(JSON.stringify(value)) <= 2048;
}

/** An ISO 8601 instant with a zone (`YYYY-MM-DDTHH:MM[:SS[.fraction]]` then `Z` or
 * `±HH:MM`), a real calendar date and time, strictly after `now` and at most 10 years
 * after it: its time in milliseconds, else `null`. */
function futureInstant(value: unknown, now: number): number | null {
  if (typeof value !== 'string') return null;
  const m =
    /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:Z|([+-])(\d{2}):(\d{2}))$/.exec(
      value,
    );
  if (!m) return null;
  const [year, month, day, hour, minute, second = 0] = m.slice(1, 7).map((p) => Number(p ?? 0));
  const daysInMonth = new Date(Date.UTC(year as number, month as number, 0)).getUTCDate();
  if (
    (month as number) < 1 ||
    (month as number) > 12 ||
    (day as number) < 1 ||
    (day as number) > daysInMonth ||
    (hour as number) > 23 ||
    (minute as number) > 59 ||
    second > 59
  ) {
    return null;
  }
  const millis = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3));
  const offset = m[8] ? (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 60 + Number(m[10])) : 0;
  const at =
    Date.UTC(
      year as number,
      (month as number) - 1,
      day as number,
      hour as number,
      minute as number,
      second,
      millis,
    ) -
    offset * 60_000;
  const limit = new Date(now);
  limit.setUTCFullYear(limit.getUTCFullYear() + 10);
  return at > now && at <= limit.getTime() ? at : null;
}

/** True when `held` grants every scope in `needed` (`*` grants all). */
export function holds(held: readonly string[], needed: readonly string[]): boolean {
  return held.includes('*') || needed.every((scope) => held.includes(scope));
}

/** DELETE's `cascade`: absent or `false` is the v1 revoke, `true` the cascade, anything
 * else (or more than one) a bad request. Read as a form-encoded query. */
export function cascadeOf(query: string | null): boolean | 'invalid' {
  const values = new URLSearchParams(query ?? '').getAll('cascade');
  if (values.length === 0) return false;
  if (values.length > 1 || (values[0] !== 'true' && values[0] !== 'false')) return 'invalid';
  return values[0] === 'true';
}

/** One request, classified once the batch it is part of is known. */
export interface Classified {
  wire: WireRequest;
  route: Route | null;
  method: string;
  key: KeyVerdict;
  /** For a request that reads a body: its verdict; `null` for one that reads none. */
  body: ErrorCode | 'ok' | null;
  fields: Fields | null;
  /** DELETE's cascade flag. */
  cascade: boolean | 'invalid';
}

export function classify(
  req: HostileRequest,
  wire: WireRequest,
  world: World,
  now: number,
): Classified {
  const route = routeOf(wire, req.path.trailingSlash);
  const method = req.method;
  const reads =
    route !== null &&
    ((route.shape === 'collection' && method === 'POST') ||
      (route.shape === 'item' && method === 'PATCH') ||
      (route.shape === 'roll' && method === 'POST'));
  const body = reads ? bodyVerdict(wire, route, now) : null;
  return {
    wire,
    route,
    method,
    key: keyVerdict(wire, world),
    body: body?.verdict ?? null,
    fields: body?.fields ?? null,
    cascade: cascadeOf(req.path.query),
  };
}

/** What the model knows of a key at the start of a batch. */
export interface KeyFacts {
  name: string;
  expiresAt: number | null;
  scopes: readonly string[];
  metadata: unknown;
  createdBy: string | null;
}

/** Facts about the state at the start of a batch and the batch as a whole: requests run
 * concurrently, so some answers depend on which of two runs first. */
export interface BatchFacts {
  /** The account's keys in the store (expired ones too: they count against the cap). */
  keys: ReadonlyMap<string, KeyFacts>;
  presenterIds: Readonly<Record<Presenter, string>>;
  cap: number;
  now: number;
  batch: readonly Classified[];
}

export interface Expectation {
  codes: ErrorCode[];
  successes: number[];
  allow?: string;
  /** The scope a 403 for the route's scope names in WWW-Authenticate. */
  scope?: string;
}

const presenterOf = (c: Classified): Presenter | null =>
  c.key === 'missing' || c.key === 'invalid' ? null : c.key;

/** The key may manage keys: everything but a read. */
const canWrite = (c: Classified): boolean => {
  const p = presenterOf(c);
  return p !== null && holds(PRESENTER_SCOPES[p], ['api_keys:write']);
};

function expired(key: KeyFacts, now: number): boolean {
  return key.expiresAt !== null && key.expiresAt <= now;
}

/** The key and, transitively, the keys that created it. */
function lineage(id: string, facts: BatchFacts): string[] {
  const chain = [id];
  for (let at = facts.keys.get(id)?.createdBy; at && !chain.includes(at); ) {
    chain.push(at);
    at = facts.keys.get(at)?.createdBy;
  }
  return chain;
}

/** `o` may delete `id` (named, or as a key made by the one a cascade names). */
function mayRemove(o: Classified, id: string, facts: BatchFacts): boolean {
  if (!canWrite(o) || o.method !== 'DELETE' || o.route?.shape !== 'item') return false;
  if (o.cascade === 'invalid') return false;
  const named = o.route.id;
  return named === id || (o.cascade === true && lineage(id, facts).includes(named));
}

/** `o` is a roll of `id` that may succeed; with `graceZero`, one that expires `id` at once. */
function mayRoll(o: Classified, id: string, graceZero: boolean): boolean {
  return (
    canWrite(o) &&
    o.method === 'POST' &&
    o.route?.shape === 'roll' &&
    o.route.id === id &&
    o.body === 'ok' &&
    (!graceZero || o.fields?.expiresIn === 0)
  );
}

/** A request that may add a key: a create or a roll with a key that may write. */
function mayAdd(o: Classified, facts: BatchFacts): boolean {
  if (!canWrite(o) || o.body !== 'ok') return false;
  if (o.method !== 'POST') return false;
  if (o.route?.shape === 'collection') return true;
  if (o.route?.shape !== 'roll') return false;
  const old = facts.keys.get(o.route.id);
  return old !== undefined && !expired(old, facts.now);
}

export function expectationFor(c: Classified, facts: BatchFacts): Expectation {
  const route = c.route;
  if (!route) return { codes: ['not_found'], successes: [] };
  const get = c.method === 'GET' || c.method === 'HEAD';
  const allowed =
    route.shape === 'collection'
      ? get || c.method === 'POST'
      : route.shape === 'item'
        ? ['PATCH', 'DELETE'].includes(c.method)
        : c.method === 'POST';
  if (!allowed) return { codes: ['method_not_allowed'], successes: [], allow: ALLOW[route.shape] };
  const presenter = presenterOf(c);
  if (c.key === 'missing') return { codes: ['missing_api_key'], successes: [] };
  if (presenter === null) return { codes: ['invalid_api_key'], successes: [] };

  const codes: ErrorCode[] = [];
  const successes: number[] = [];
  // A request of the same batch may revoke the key first, or roll it with no grace.
  const presenterId = facts.presenterIds[presenter];
  if (facts.batch.some((o) => mayRemove(o, presenterId, facts) || mayRoll(o, presenterId, true))) {
    codes.push('invalid_api_key');
  }
  const held = PRESENTER_SCOPES[presenter];
  const needed = get ? 'api_keys:read' : 'api_keys:write';
  const admitted = get
    ? holds(held, ['api_keys:read']) || holds(held, ['api_keys:write'])
    : holds(held, ['api_keys:write']);
  if (!admitted) return { codes: [...codes, 'insufficient_scope'], successes, scope: needed };
  if (c.body !== null && c.body !== 'ok') return { codes: [...codes, c.body], successes };
  const fields = c.fields ?? {};

  if (route.shape === 'collection' && get) return { codes, successes: [200] };
  if (route.shape === 'collection') {
    if (!holds(held, fields.scopes ?? held))
      return { codes: [...codes, 'insufficient_scope'], successes };
    return withCap(codes, facts);
  }

  const id = route.id;
  const key = facts.keys.get(id);
  const others = facts.batch.filter((o) => o !== c);
  if (route.shape === 'item' && c.method === 'DELETE' && c.cascade === 'invalid') {
    return { codes: [...codes, 'invalid_request'], successes };
  }
  if (!key) return { codes: [...codes, 'not_found'], successes };
  if (others.some((o) => mayRemove(o, id, facts))) codes.push('not_found');

  if (route.shape === 'item' && c.method === 'DELETE') return { codes, successes: [200] };
  if (route.shape === 'item') {
    // PATCH: an expiry only moves earlier.
    if (fields.expiresAt !== undefined) {
      if (key.expiresAt !== null && fields.expiresAt > key.expiresAt) {
        return { codes: [...codes, 'invalid_request'], successes };
      }
      const shortened = others.some(
        (o) =>
          mayRoll(o, id, false) ||
          (canWrite(o) &&
            o.route?.shape === 'item' &&
            o.route.id === id &&
            o.method === 'PATCH' &&
            o.fields?.expiresAt !== undefined),
      );
      if (shortened) codes.push('invalid_request');
    }
    return { codes, successes: [200] };
  }

  // Roll: an expired key is not found; a rolled key holds no scope the old key or the
  // caller lacks.
  if (expired(key, facts.now)) return { codes: [...codes, 'not_found'], successes };
  if (others.some((o) => mayRoll(o, id, true))) codes.push('not_found');
  const scopes = fields.scopes ?? key.scopes;
  if (!holds(key.scopes, scopes) || !holds(held, scopes)) {
    return { codes: [...codes, 'insufficient_scope'], successes };
  }
  return withCap(codes, facts);
}

/** A create or roll that passed its checks: 201 while the account is under its cap, 409
 * at it; which one depends on what else the batch adds and removes. */
function withCap(codes: ErrorCode[], facts: BatchFacts): Expectation {
  const adds = facts.batch.filter((o) => mayAdd(o, facts)).length;
  let removals = 0;
  for (const o of facts.batch) {
    if (!canWrite(o) || o.method !== 'DELETE' || o.route?.shape !== 'item') continue;
    if (o.cascade === 'invalid' || !facts.keys.has(o.route.id)) continue;
    // A cascade may take keys the batch itself creates.
    removals += o.cascade === true ? facts.keys.size + adds : 1;
  }
  const successes: number[] = [];
  if (facts.keys.size - removals < facts.cap) successes.push(201);
  if (facts.keys.size + adds - 1 >= facts.cap) codes.push('key_limit_reached');
  return { codes, successes };
}

export function statusOf(code: ErrorCode): number {
  return errorCodes[code].status;
}
