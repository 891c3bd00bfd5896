/**
 * Hostile requests for the management API, as fast-check arbitraries, and a model of what
 * DESIGN.md says each one must get. A generated request is symbolic ("the main key with
 * its 7th character changed", "a target's id, partly percent-encoded"): it is turned into
 * bytes against the keys of the moment only when it is sent, so a counterexample that
 * fast-check prints names no raw key, and stays meaningful across runs.
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

/** The keys a batch is made against; the fuzz keeps them alive between batches. */
export interface World {
  ownerId: string;
  /** The one key the fuzz presents as valid. */
  main: KnownKey;
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

export const TARGET_COUNT = 6;

// ---------------------------------------------------------------------------------------
// The symbolic request
// ---------------------------------------------------------------------------------------

export const METHODS = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'PUT', 'OPTIONS', 'TRACE'];

export type KeyCase =
  | { kind: 'absent' }
  | { kind: 'blank'; value: string }
  | { kind: 'valid'; pad: string }
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
  | { kind: 'main' | 'foreign' | 'revoked'; encode: number }
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
    weight: 40,
    arbitrary: fc.constantFrom('', ' ', '\t \t').map((pad) => ({ kind: 'valid', pad }) as const),
  },
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
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constantFrom('main' as const, 'foreign' as const, 'revoked' as const),
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
    { weight: 5, arbitrary: fc.constant<IdCase[]>([]) },
    { weight: 6, arbitrary: idCase.map((id) => [id]) },
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

const bodyCase: fc.Arbitrary<BodyCase> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'none' } as const) },
  {
    weight: 14,
    arbitrary: fc
      .tuple(
        fc.option(nameValue, { freq: 8, nil: undefined }),
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
      )
      .map(([name, extra, polluting]) => {
        const members: Array<[string, unknown]> = [...polluting, ...extra];
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
          : fc.constantFrom('PATCH', 'DELETE'),
    },
    { weight: 1, arbitrary: fc.constantFrom(...METHODS) },
  );

export const hostileRequest: fc.Arbitrary<HostileRequest> = pathCase.chain((path) =>
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

export function toWire(req: HostileRequest, world: World, origin: string): WireRequest {
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

  const body = bodyOf(req.body);
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
      return percentEncodeSome(world[id.kind].id, id.encode);
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

function bodyOf(body: BodyCase): Buffer | undefined {
  switch (body.kind) {
    case 'none':
      return undefined;
    case 'object':
      return Buffer.from(
        `{${body.members.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`,
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

// ---------------------------------------------------------------------------------------
// The model: what DESIGN.md says the answer is
// ---------------------------------------------------------------------------------------

export type Route = { shape: 'collection' } | { shape: 'item'; id: string };

/** DESIGN.md's routes: the mount (optionally with one trailing slash) is the collection,
 * one more non-empty segment (optionally with a trailing slash) is an item, anything else
 * is unknown. The id is the segment, percent-decoded. */
export function routeOf(wire: WireRequest, trailingSlash: boolean): Route | null {
  const segments = trailingSlash ? [...wire.segments, ''] : [...wire.segments];
  if (segments.at(-1) === '') segments.pop();
  if (segments.length === 0) return { shape: 'collection' };
  const [only] = segments;
  if (segments.length === 1 && only) return { shape: 'item', id: decodeOrEmpty(only) };
  return null;
}

function decodeOrEmpty(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}

export const ALLOW = { collection: 'GET, HEAD, POST', item: 'PATCH, DELETE' } as const;

export type KeyVerdict = 'missing' | 'valid' | 'invalid';

/** Node trims spaces and tabs around a header value and joins repeated ones with ", ". */
export function keyVerdict(wire: WireRequest, mainKey: string): KeyVerdict {
  if (wire.keyValues.length === 0) return 'missing';
  if (wire.keyValues.length > 1) return 'invalid';
  const value = (wire.keyValues[0] as Buffer).toString('latin1').trim();
  if (value === '') return 'missing';
  return value === mainKey ? 'valid' : 'invalid';
}

/** For a body-reading request with a valid key: the first check that fails, or `ok`. */
export function bodyVerdict(wire: WireRequest): ErrorCode | 'ok' {
  if (!wire.jsonContentType) return 'unsupported_media_type';
  const bytes = wire.body ?? Buffer.alloc(0);
  if (bytes.byteLength > MAX_BODY_BYTES) return 'payload_too_large';
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return 'invalid_json';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'invalid_request';
  const name = Object.hasOwn(value, 'name') ? (value as { name: unknown }).name : undefined;
  return isAcceptableName(name) ? 'ok' : 'invalid_request';
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

/** One request, classified once the batch it is part of is known. */
export interface Classified {
  wire: WireRequest;
  route: Route | null;
  method: string;
  key: KeyVerdict;
  body: ErrorCode | 'ok' | null;
}

export function classify(req: HostileRequest, wire: WireRequest, mainKey: string): Classified {
  const route = routeOf(wire, req.path.trailingSlash);
  const method = req.method;
  const reads = route?.shape === 'collection' ? method === 'POST' : method === 'PATCH';
  return {
    wire,
    route,
    method,
    key: keyVerdict(wire, mainKey),
    body: reads ? bodyVerdict(wire) : null,
  };
}

/** Facts about the state at the start of a batch and the batch as a whole: requests run
 * concurrently, so some answers depend on which of two runs first. */
export interface BatchFacts {
  liveIds: ReadonlySet<string>;
  mainId: string;
  cap: number;
  batch: readonly Classified[];
}

export interface Expectation {
  codes: ErrorCode[];
  successes: number[];
  allow?: string;
}

export function expectationFor(c: Classified, facts: BatchFacts): Expectation {
  const route = c.route;
  if (!route) return { codes: ['not_found'], successes: [] };
  const get = c.method === 'GET' || c.method === 'HEAD';
  const allowed =
    route.shape === 'collection'
      ? get || c.method === 'POST'
      : ['PATCH', 'DELETE'].includes(c.method);
  if (!allowed) return { codes: ['method_not_allowed'], successes: [], allow: ALLOW[route.shape] };
  if (c.key === 'missing') return { codes: ['missing_api_key'], successes: [] };
  if (c.key === 'invalid') return { codes: ['invalid_api_key'], successes: [] };

  const codes: ErrorCode[] = [];
  const successes: number[] = [];
  // A request of the same batch may revoke the main key first.
  if (facts.batch.some((o) => isValidDelete(o, facts.mainId))) codes.push('invalid_api_key');
  if (c.body !== null && c.body !== 'ok') return { codes: [...codes, c.body], successes };

  if (route.shape === 'collection' && get) return { codes, successes: [200] };
  if (route.shape === 'collection') {
    const creates = facts.batch.filter(
      (o) => o.key === 'valid' && o.route?.shape === 'collection' && o.body === 'ok',
    ).length;
    const deletes = facts.batch.filter(
      (o) => isValidDelete(o) && facts.liveIds.has(idOf(o)),
    ).length;
    if (facts.liveIds.size - deletes < facts.cap) successes.push(201);
    if (facts.liveIds.size + creates - 1 >= facts.cap) codes.push('key_limit_reached');
    return { codes, successes };
  }
  const id = route.id;
  if (!facts.liveIds.has(id)) return { codes: [...codes, 'not_found'], successes };
  const otherDeletes = facts.batch.filter((o) => o !== c && isValidDelete(o, id)).length;
  if (otherDeletes > 0) codes.push('not_found');
  return { codes, successes: [200] };
}

function idOf(c: Classified): string {
  return c.route?.shape === 'item' ? c.route.id : '';
}

function isValidDelete(c: Classified, id?: string): boolean {
  return (
    c.key === 'valid' &&
    c.method === 'DELETE' &&
    c.route?.shape === 'item' &&
    (id === undefined || c.route.id === id)
  );
}

export function statusOf(code: ErrorCode): number {
  return errorCodes[code].status;
}
