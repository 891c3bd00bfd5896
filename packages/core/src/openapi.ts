import { type ErrorCode, errorCodes } from './errors.js';
import {
  DEFAULT_ROLL_GRACE_SECONDS,
  MAX_CREDITS,
  MAX_METADATA_BYTES,
  MAX_RATE_LIMIT,
  MAX_ROLL_GRACE_SECONDS,
  MAX_SCOPES,
  MAX_WINDOW_SECONDS,
} from './key-fields.js';
import { MAX_ALERT_FIELD_LENGTH, MAX_REPORTED_KEYS } from './leak.js';
import { MAX_NAME_LENGTH } from './names.js';

/** `openApiDocument`'s options: the same mount path and header name the routes use. */
export interface OpenApiOptions {
  /** @default '/v1/api-keys' */
  mountPath?: string;
  /** @default 'X-API-Key' */
  headerName?: string;
  /** Whether the dashboard page is served (`dashboard: true`). @default false */
  dashboard?: boolean;
  /** Which leak routes are served (`leaks.github`, `leaks.reportRoute`). @default none */
  leaks?: { github?: boolean; reportRoute?: boolean };
}

type Schema = Record<string, unknown>;

const timestamp = (description: string, nullable = false): Schema => ({
  type: nullable ? ['string', 'null'] : 'string',
  format: 'date-time',
  description,
});

const scopesSchema: Schema = {
  type: 'array',
  minItems: 1,
  maxItems: MAX_SCOPES,
  uniqueItems: true,
  items: { type: 'string', pattern: '^(\\*|[A-Za-z0-9_.:-]{1,64})$' },
  description: 'What the key may do; `["*"]` is everything.',
  example: ['api_keys:read'],
};

const metadataSchema: Schema = {
  type: 'object',
  description: `The host's own JSON object: at most ${MAX_METADATA_BYTES} bytes as compact JSON, 3 levels deep.`,
  example: { env: 'staging' },
};

const rateLimitSchema: Schema = {
  type: ['object', 'null'],
  additionalProperties: false,
  required: ['limit', 'windowSec'],
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: MAX_RATE_LIMIT },
    windowSec: { type: 'integer', minimum: 1, maximum: MAX_WINDOW_SECONDS },
  },
  description:
    'At most `limit` requests in each window of `windowSec` seconds (windows aligned to the Unix epoch); `null`: none.',
  example: { limit: 100, windowSec: 60 },
};

const refillSchema: Schema = {
  type: ['object', 'null'],
  additionalProperties: false,
  required: ['amount', 'every'],
  properties: {
    amount: { type: 'integer', minimum: 1, maximum: MAX_CREDITS },
    every: { type: 'string', enum: ['day', 'month'] },
  },
  description:
    'The balance is set to `amount` at 00:00 UTC of each day or of the first of each month; `null`: never.',
};

/** `credits` as answers show it (every field) or as a request gives it (only `remaining`
 * is needed). */
const creditsSchema = (answer: boolean): Schema => ({
  type: ['object', 'null'],
  additionalProperties: false,
  required: answer ? ['remaining', 'refill', 'strict'] : ['remaining'],
  properties: {
    remaining: {
      type: 'integer',
      minimum: 0,
      maximum: MAX_CREDITS,
      description: answer ? 'The balance as this instance knows it.' : 'The starting balance.',
    },
    refill: refillSchema,
    strict: {
      type: 'boolean',
      description:
        'One atomic store call per request, so the balance never goes below zero. @default false',
    },
  },
  description: 'A balance each request spends (cost 1, or the route’s cost); `null`: none.',
  example: { remaining: 1000, refill: { amount: 1000, every: 'month' }, strict: false },
});

/**
 * The fields of a key as every answer shows it, in wire order (`keyToJson`). The one place
 * a new key field is described: the `ApiKey` schema, its `required` list and the created
 * key's schema all come from here.
 */
export const keyFieldSchemas: Record<string, Schema> = {
  id: { type: 'string', description: 'The key id.', example: 'k_5hY2pQ9xXr1Lm0Zb3Kd8Wc' },
  name: { type: 'string', minLength: 1, maxLength: MAX_NAME_LENGTH, example: 'Staging server' },
  keyPrefix: {
    type: 'string',
    description: 'The key’s first characters.',
    example: 'kw_live_5hY2',
  },
  keySuffix: { type: 'string', description: 'The key’s last characters.', example: 'x9Qa' },
  lastUsedAt: timestamp('When the key last authenticated a request (updated in batches).', true),
  createdAt: timestamp('When the key was made.'),
  expiresAt: timestamp('From this instant on the key is refused; `null`: never.', true),
  scopes: scopesSchema,
  metadata: metadataSchema,
  createdBy: {
    type: ['string', 'null'],
    description:
      'Id of the key that created this one over HTTP; `null` when made by the host’s code or a signed-in user.',
  },
  rateLimit: rateLimitSchema,
  credits: creditsSchema(true),
  leakedAt: timestamp(
    'When the key was reported leaked; it manages no keys from then on and, quarantined, stops working at its shortened `expiresAt`. `null`: never reported.',
    true,
  ),
  leakSource: {
    type: ['string', 'null'],
    description:
      'Who reported the leak: `github` (secret scanning), `report` (the report route) or the host’s own name; `null` when not leaked.',
  },
};

const limitFieldsNote =
  ' A key with a rate limit or credits may not set either (403 `insufficient_scope`).';

/** Request bodies, by route: the fields core reads. */
const requestSchemas: Record<string, Schema> = {
  CreateKeyRequest: {
    type: 'object',
    required: ['name'],
    properties: {
      name: keyFieldSchemas.name,
      expiresAt: timestamp('An instant with a zone, in the future, at most 10 years ahead.'),
      expiresIn: {
        type: 'integer',
        minimum: 60,
        maximum: 315_360_000,
        description: 'Seconds from now; not with `expiresAt`.',
      },
      scopes: { ...scopesSchema, description: 'Default: the caller’s own scopes.' },
      metadata: metadataSchema,
      rateLimit: {
        ...rateLimitSchema,
        description: `${rateLimitSchema.description}${limitFieldsNote}`,
      },
      credits: {
        ...creditsSchema(false),
        description: `A balance each request spends.${limitFieldsNote}`,
      },
    },
    example: { name: 'Staging server', expiresIn: 2_592_000, scopes: ['api_keys:read'] },
  },
  UpdateKeyRequest: {
    type: 'object',
    minProperties: 1,
    properties: {
      name: keyFieldSchemas.name,
      metadata: metadataSchema,
      expiresAt: timestamp('Only earlier than the current expiry: a key’s life is never extended.'),
      rateLimit: {
        ...rateLimitSchema,
        description: `Replaces the rate limit; \`null\` removes it.${limitFieldsNote}`,
      },
      credits: {
        ...creditsSchema(false),
        description: `Replaces the credits; \`null\` removes them.${limitFieldsNote}`,
      },
    },
    example: { name: 'Production server' },
  },
  RollKeyRequest: {
    type: 'object',
    properties: {
      expiresIn: {
        type: 'integer',
        minimum: 0,
        maximum: MAX_ROLL_GRACE_SECONDS,
        default: DEFAULT_ROLL_GRACE_SECONDS,
        description: 'Seconds the old key keeps working (the grace period).',
      },
      scopes: { ...scopesSchema, description: 'Default: the old key’s scopes; never more.' },
    },
    example: { expiresIn: 3600 },
  },
  GitHubLeakAlert: {
    type: 'array',
    minItems: 1,
    description:
      'GitHub secret scanning’s alert: the matches it found. The body must be sent as signed: the signature covers its bytes.',
    items: {
      type: 'object',
      required: ['token', 'type'],
      properties: {
        token: { type: 'string', minLength: 1, maxLength: MAX_ALERT_FIELD_LENGTH },
        type: { type: 'string', minLength: 1, maxLength: MAX_ALERT_FIELD_LENGTH },
        url: { type: 'string', description: 'Where the token was found.' },
        source: { type: 'string' },
      },
    },
    example: [
      {
        token: 'kw_live_…',
        type: 'keyward_api_key',
        url: 'https://github.com/octo/app/blob/main/.env',
        source: 'content',
      },
    ],
  },
  LeakReport: {
    type: 'object',
    required: ['keys'],
    properties: {
      keys: {
        type: 'array',
        maxItems: MAX_REPORTED_KEYS,
        items: { type: 'string', maxLength: 512 },
        description: 'Keys found in the open. The answer is the same whether any is real.',
      },
    },
    example: { keys: ['kw_live_…'] },
  },
};

interface Operation {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** Below the mount path: '' is the collection, `{id}` one key. */
  path: string;
  operationId: string;
  summary: string;
  /** Any one of these admits (`*` holds all); empty: no key at all, so no security, no
   * key errors and no rate-limit headers, and `errors` lists all the route answers. */
  scopes: readonly string[];
  /** Request headers the route reads. */
  headers?: Schema[];
  /** The request body's schema name, and whether it may be left out. */
  body?: { schema: string; optional?: boolean };
  query?: Schema[];
  success: { status: number; description: string; schema: Schema };
  /** Errors particular to this route; the shared ones are added by `auth` and `body`. */
  errors?: readonly ErrorCode[];
}

const READ = ['api_keys:read', 'api_keys:write'];
const WRITE = ['api_keys:write'];
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const envelope = (data: Schema): Schema => ({
  type: 'object',
  additionalProperties: false,
  required: ['success', 'data'],
  properties: { success: { const: true }, data },
});
const idParameter: Schema = {
  name: 'id',
  in: 'path',
  required: true,
  schema: { type: 'string' },
  description: 'The key id.',
};

/**
 * The management API's routes, as data. A new route (a leak report, say) is one more entry
 * here; its errors come from `errorCodes`.
 */
export const operations: Operation[] = [
  {
    method: 'get',
    path: '',
    operationId: 'listApiKeys',
    summary: 'List the account’s keys, newest first, masked.',
    scopes: READ,
    success: {
      status: 200,
      description: 'The keys.',
      schema: envelope({ type: 'array', items: ref('ApiKey') }),
    },
  },
  {
    method: 'post',
    path: '',
    operationId: 'createApiKey',
    summary: 'Create a key; the raw key is in this answer only.',
    scopes: WRITE,
    body: { schema: 'CreateKeyRequest' },
    success: {
      status: 201,
      description: 'The new key, with `rawKey`.',
      schema: envelope(ref('CreatedApiKey')),
    },
    errors: ['key_limit_reached'],
  },
  {
    method: 'patch',
    path: '/{id}',
    operationId: 'updateApiKey',
    summary: 'Rename a key, replace its metadata, or move its expiry earlier.',
    scopes: WRITE,
    body: { schema: 'UpdateKeyRequest' },
    success: { status: 200, description: 'The updated key.', schema: envelope(ref('ApiKey')) },
    // rate_limited: too many renames in the account, as well as the key's own limit.
    errors: ['not_found', 'rate_limited'],
  },
  {
    method: 'delete',
    path: '/{id}',
    operationId: 'revokeApiKey',
    summary: 'Revoke a key, and with `cascade=true` every key it created, transitively.',
    scopes: WRITE,
    query: [
      {
        name: 'cascade',
        in: 'query',
        required: false,
        schema: { type: 'string', enum: ['true', 'false'], default: 'false' },
      },
    ],
    success: {
      status: 200,
      description: 'Revoked; with cascade, the ids revoked.',
      schema: {
        type: 'object',
        additionalProperties: false,
        required: ['success'],
        properties: {
          success: { const: true },
          revoked: { type: 'array', items: { type: 'string' } },
        },
      },
    },
    errors: ['not_found'],
  },
  {
    method: 'post',
    path: '/{id}/roll',
    operationId: 'rollApiKey',
    summary: 'A new key in place of this one; the old one keeps working for the grace period.',
    scopes: WRITE,
    body: { schema: 'RollKeyRequest', optional: true },
    success: {
      status: 201,
      description: 'The successor, with `rawKey`.',
      schema: envelope(ref('CreatedApiKey')),
    },
    errors: ['not_found', 'key_limit_reached'],
  },
];

/** The leak routes (docs/design.md, "Leak response"): no key; in the document only when
 * the host serves them. */
export const leakOperations = {
  github: {
    method: 'post',
    path: '/leaks/github',
    operationId: 'receiveGitHubLeakAlert',
    summary:
      'GitHub secret scanning’s alert of keys found in public code: each real key is handled as leaked.',
    scopes: [],
    headers: [
      {
        name: 'GITHUB-PUBLIC-KEY-IDENTIFIER',
        in: 'header',
        required: true,
        schema: { type: 'string' },
        description: 'Which of GitHub’s public keys signed the body.',
      },
      {
        name: 'GITHUB-PUBLIC-KEY-SIGNATURE',
        in: 'header',
        required: true,
        schema: { type: 'string' },
        description: 'ECDSA (P-256, SHA-256) signature of the body’s bytes, base64.',
      },
    ],
    body: { schema: 'GitHubLeakAlert' },
    success: {
      status: 200,
      description: 'Feedback for each match, in order; a token is named by its SHA-256 only.',
      schema: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['token_hash', 'token_type', 'label'],
          properties: {
            token_hash: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            token_type: { type: 'string' },
            label: { type: 'string', enum: ['true_positive', 'false_positive'] },
          },
        },
      },
    },
    errors: [
      'invalid_json',
      'invalid_request',
      'invalid_signature',
      'payload_too_large',
      'service_unavailable',
    ],
  },
  reportRoute: {
    method: 'post',
    path: '/report-leak',
    operationId: 'reportLeakedKeys',
    summary:
      'Report keys found in the open; they are checked after the answer, which is the same whether any is real.',
    scopes: [],
    body: { schema: 'LeakReport' },
    success: {
      status: 202,
      description: 'Received; how many keys the report held.',
      schema: envelope({
        type: 'object',
        additionalProperties: false,
        required: ['received'],
        properties: { received: { type: 'integer', minimum: 0, maximum: MAX_REPORTED_KEYS } },
      }),
    },
    errors: [
      'invalid_json',
      'invalid_request',
      'payload_too_large',
      'unsupported_media_type',
      'rate_limited',
    ],
  },
} satisfies Record<string, Operation>;

/** The answer headers of rate limits (docs/design.md, "Rate limits and credits"). */
const limitHeaderSchemas: Record<string, Schema> = {
  'RateLimit-Policy': {
    description:
      'The key’s rate limit, on answers to a key that has one: `"window";q=<limit>;w=<windowSec>`.',
    schema: { type: 'string' },
    example: '"window";q=100;w=60',
  },
  RateLimit: {
    description:
      'What is left of the window, on answers to a key that has a rate limit: `"window";r=<remaining>;t=<seconds to its end>`.',
    schema: { type: 'string' },
    example: '"window";r=42;t=17',
  },
  'Retry-After': {
    description:
      'Seconds to wait: to the window’s end (`rate_limited`), to the next refill (`credits_exhausted`, when there is one), or before retrying (`service_unavailable`).',
    schema: { type: 'integer', minimum: 0 },
  },
};
const limitHeaderRefs: Schema = {
  'RateLimit-Policy': { $ref: '#/components/headers/RateLimit-Policy' },
  RateLimit: { $ref: '#/components/headers/RateLimit' },
};

/** What every route can answer besides its own errors. */
function errorsOf(op: Operation): ErrorCode[] {
  if (op.scopes.length === 0) return [...(op.errors ?? []), 'internal_error'];
  const codes: ErrorCode[] = ['missing_api_key', 'invalid_api_key', 'insufficient_scope'];
  if (op.method !== 'get') codes.push('forbidden_origin');
  if (op.body) {
    codes.push('unsupported_media_type', 'payload_too_large', 'invalid_json', 'invalid_request');
  } else if (op.query) {
    codes.push('invalid_request');
  }
  // A key with a rate limit or credits spends them on management requests too.
  codes.push(...(op.errors ?? []), 'rate_limited', 'credits_exhausted');
  codes.push('service_unavailable', 'internal_error');
  return [...new Set(codes)];
}

const errorSchema = (codes: readonly ErrorCode[]): Schema => ({
  type: 'object',
  additionalProperties: false,
  required: ['success', 'error'],
  properties: {
    success: { const: false },
    error: {
      type: 'object',
      additionalProperties: false,
      required: ['code', 'message'],
      properties: { code: { type: 'string', enum: [...codes] }, message: { type: 'string' } },
    },
  },
});

/**
 * The management API as an OpenAPI 3.1 document, as mounted: every route under
 * `mountPath`, the key header by its name, scopes, every status with its error codes and
 * schemas. Served at `<mountPath>/openapi.json`; hosts may merge it into their own.
 */
export function openApiDocument(options: OpenApiOptions = {}): Record<string, unknown> {
  const mountPath = (options.mountPath ?? '/v1/api-keys').replace(/\/+$/, '');
  const headerName = options.headerName ?? 'X-API-Key';
  const paths: Record<string, Record<string, unknown>> = {};
  const served = [
    ...operations,
    ...(options.leaks?.github ? [leakOperations.github] : []),
    ...(options.leaks?.reportRoute ? [leakOperations.reportRoute] : []),
  ];
  for (const op of served) {
    const path = `${mountPath}${op.path}`;
    const item = paths[path] ?? {};
    paths[path] = item;
    if (op.path.includes('{id}')) item.parameters = [idParameter];
    item[op.method] = operation(op, headerName);
  }
  paths[`${mountPath}/openapi.json`] = {
    get: {
      operationId: 'getOpenApiDocument',
      summary: 'This document.',
      security: [],
      responses: {
        '200': {
          description: 'The OpenAPI document.',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
      },
    },
  };
  if (options.dashboard) {
    paths[`${mountPath}/dashboard`] = {
      get: {
        operationId: 'getDashboard',
        summary: 'The key-management page for the host’s signed-in user.',
        security: [],
        responses: {
          '200': {
            description: 'The page.',
            content: { 'text/html': { schema: { type: 'string' } } },
          },
          '401': {
            description: 'Not signed in.',
            content: { 'text/html': { schema: { type: 'string' } } },
          },
          '500': {
            description: 'The host’s `authorize` failed.',
            content: { 'text/html': { schema: { type: 'string' } } },
          },
        },
      },
    };
  }
  const fieldNames = Object.keys(keyFieldSchemas);
  return {
    openapi: '3.1.0',
    info: {
      title: 'keyward API key management',
      version: '1.0.0',
      description:
        `Manage an account’s API keys. A request authenticates with a key in the \`${headerName}\` header; ` +
        'without one, the host’s own sign-in (its session cookie) may admit it, and then writes must come from the host’s pages ' +
        '(`Sec-Fetch-Site: same-origin` or a trusted `Origin`), else 403 `forbidden_origin`.',
    },
    // Relative to the document's own address: the paths already carry the mount path.
    servers: [{ url: '/' }],
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: headerName },
      },
      headers: limitHeaderSchemas,
      schemas: {
        ApiKey: {
          type: 'object',
          additionalProperties: false,
          required: fieldNames,
          properties: keyFieldSchemas,
        },
        CreatedApiKey: {
          type: 'object',
          additionalProperties: false,
          required: ['rawKey', ...fieldNames],
          properties: {
            ...keyFieldSchemas,
            rawKey: { type: 'string', description: 'The key itself: shown in this answer only.' },
          },
        },
        ...Object.fromEntries(
          Object.entries(requestSchemas).filter(([name]) =>
            served.some((op) => op.body?.schema === name),
          ),
        ),
        Error: errorSchema(Object.keys(errorCodes) as ErrorCode[]),
      },
    },
  };
}

function operation(op: Operation, headerName: string): Record<string, unknown> {
  const keyed = op.scopes.length > 0;
  const responses: Record<string, unknown> = {
    [op.success.status]: {
      description: op.success.description,
      ...(keyed ? { headers: limitHeaderRefs } : {}),
      content: { 'application/json': { schema: op.success.schema } },
    },
  };
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorsOf(op)) {
    const { status } = errorCodes[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  for (const [status, codes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    const headers: Record<string, unknown> = {};
    if (status === 401 || codes.includes('insufficient_scope')) {
      headers['WWW-Authenticate'] = {
        schema: { type: 'string' },
        example: `ApiKey header="${headerName}"`,
      };
    }
    if (
      ['service_unavailable', 'rate_limited', 'credits_exhausted'].some((c) =>
        codes.includes(c as ErrorCode),
      )
    ) {
      headers['Retry-After'] = { $ref: '#/components/headers/Retry-After' };
    }
    // Past the key check, a limited key's answer carries its limit, error or not.
    if (keyed && status !== 401) Object.assign(headers, limitHeaderRefs);
    responses[status] = {
      description: codes.map((code) => `\`${code}\``).join(', '),
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      content: {
        'application/json': {
          schema: errorSchema(codes),
          example: {
            success: false,
            error: { code: codes[0], message: errorCodes[codes[0] as ErrorCode].message },
          },
        },
      },
    };
  }
  responses.default = {
    description: 'Any other error (405 for a method the path lacks), in the shared envelope.',
    content: { 'application/json': { schema: ref('Error') } },
  };
  const parameters = [...(op.query ?? []), ...(op.headers ?? [])];
  return {
    operationId: op.operationId,
    summary: op.summary,
    description: keyed
      ? `Needs a key (or signed-in user) holding ${op.scopes.map((s) => `\`${s}\``).join(' or ')} (\`*\` holds all).`
      : 'Needs no key: served only when the host enables it.',
    security: keyed ? [{ apiKey: [] }] : [],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(op.body
      ? {
          requestBody: {
            required: !op.body.optional,
            content: { 'application/json': { schema: ref(op.body.schema) } },
          },
        }
      : {}),
    responses,
    ...(keyed ? { 'x-keyward-scopes': op.scopes } : {}),
  };
}
