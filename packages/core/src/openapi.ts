import { type ErrorCode, errorCodes } from './errors.js';
import {
  DEFAULT_ROLL_GRACE_SECONDS,
  MAX_METADATA_BYTES,
  MAX_ROLL_GRACE_SECONDS,
  MAX_SCOPES,
} from './key-fields.js';
import { MAX_NAME_LENGTH } from './names.js';

/** `openApiDocument`'s options: the same mount path and header name the routes use. */
export interface OpenApiOptions {
  /** @default '/v1/api-keys' */
  mountPath?: string;
  /** @default 'X-API-Key' */
  headerName?: string;
  /** Whether the dashboard page is served (`dashboard: true`). @default false */
  dashboard?: boolean;
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
};

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
};

interface Operation {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** Below the mount path: '' is the collection, `{id}` one key. */
  path: string;
  operationId: string;
  summary: string;
  /** Any one of these admits (`*` holds all); empty: no key at all. */
  scopes: readonly string[];
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

/** What every route can answer besides its own errors. */
function errorsOf(op: Operation): ErrorCode[] {
  const codes: ErrorCode[] = ['missing_api_key', 'invalid_api_key', 'insufficient_scope'];
  if (op.method !== 'get') codes.push('forbidden_origin');
  if (op.body) {
    codes.push('unsupported_media_type', 'payload_too_large', 'invalid_json', 'invalid_request');
  } else if (op.query) {
    codes.push('invalid_request');
  }
  codes.push(...(op.errors ?? []), 'service_unavailable', 'internal_error');
  return codes;
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
  for (const op of operations) {
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
        ...requestSchemas,
        Error: errorSchema(Object.keys(errorCodes) as ErrorCode[]),
      },
    },
  };
}

function operation(op: Operation, headerName: string): Record<string, unknown> {
  const responses: Record<string, unknown> = {
    [op.success.status]: {
      description: op.success.description,
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
    if (codes.includes('service_unavailable') || codes.includes('rate_limited')) {
      headers['Retry-After'] = { schema: { type: 'integer' }, description: 'Seconds to wait.' };
    }
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
  return {
    operationId: op.operationId,
    summary: op.summary,
    description: `Needs a key (or signed-in user) holding ${op.scopes.map((s) => `\`${s}\``).join(' or ')} (\`*\` holds all).`,
    security: [{ apiKey: [] }],
    ...(op.query ? { parameters: op.query } : {}),
    ...(op.body
      ? {
          requestBody: {
            required: !op.body.optional,
            content: { 'application/json': { schema: ref(op.body.schema) } },
          },
        }
      : {}),
    responses,
    'x-keyward-scopes': op.scopes,
  };
}
