import { isKeywardError, KeywardError } from './errors.js';
import type { ApiKey, AuthenticatedKey, CreatedApiKey, KeyService } from './service.js';

/** What an adapter hands to core: the parts of a request keyward reads. */
export interface HttpRequest {
  method: string;
  /** The request target's path, still percent-encoded. A query string or fragment, and
   * the scheme and authority of an absolute-form target (`http://host/v1/api-keys`), may
   * be left on: core ignores them. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The raw body, read only after the key is verified and the media type accepted. */
  body: AsyncIterable<Uint8Array>;
}

/** What core hands back: adapters write it as is, so every framework sends the same bytes. */
export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface HttpOptions {
  /** Where the management routes live. @default '/v1/api-keys' */
  mountPath?: string;
  /** The request header holding the key (case-insensitive). @default 'X-API-Key' */
  headerName?: string;
  /** Largest accepted request body, in bytes. @default 16384 */
  maxBodyBytes?: number;
}

type AuthResult = { ok: true; key: AuthenticatedKey } | { ok: false; error: KeywardError };

interface ActionContext {
  key: AuthenticatedKey;
  id: string;
  body: Record<string, unknown>;
}

interface Action {
  /** Reads and validates a JSON object body before running. */
  readsBody: boolean;
  run(service: KeyService, ctx: ActionContext): Promise<HttpResponse>;
}

interface Route {
  /** `collection` is the mount path itself; `item` is one segment below it (the id). */
  shape: 'collection' | 'item';
  actions: Partial<Record<string, Action>>;
}

/** The management API of spec/api-keys.md, as data: both adapters walk this one table. */
export const routes: readonly Route[] = [
  {
    shape: 'collection',
    actions: {
      GET: {
        readsBody: false,
        run: async (service, { key }) =>
          success(200, (await service.list(key.ownerId)).map(toJson)),
      },
      POST: {
        readsBody: true,
        run: async (service, { key, body }) =>
          success(201, toJson(await service.create(key.ownerId, body.name))),
      },
    },
  },
  {
    shape: 'item',
    actions: {
      PATCH: {
        readsBody: true,
        run: async (service, { key, id, body }) => {
          const renamed = await service.rename(key.ownerId, id, body.name);
          if (!renamed) throw new KeywardError('not_found');
          return success(200, toJson(renamed));
        },
      },
      DELETE: {
        readsBody: false,
        run: async (service, { key, id }) => {
          if (!(await service.revoke(key.ownerId, id))) throw new KeywardError('not_found');
          return jsonResponse(200, { success: true });
        },
      },
    },
  },
];

/**
 * The framework-agnostic HTTP layer: the management routes and the guard, with the checks
 * of DESIGN.md in their order (route → key → media type → size → JSON → fields →
 * resource). Adapters translate their request into an `HttpRequest` and write back the
 * `HttpResponse`; nothing else.
 */
export function createHttpHandler(service: KeyService, options: HttpOptions = {}) {
  const mountPath = (options.mountPath ?? '/v1/api-keys').replace(/\/+$/, '');
  if (!mountPath.startsWith('/')) {
    throw new TypeError(`keyward: mountPath must start with "/"; got ${options.mountPath}.`);
  }
  const headerName = (options.headerName ?? 'X-API-Key').toLowerCase();
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024;
  const wwwAuthenticate = `ApiKey header="${options.headerName ?? 'X-API-Key'}"`;

  /** Reads the key header and verifies it; never throws. */
  async function authenticate(headers: HttpRequest['headers']): Promise<AuthResult> {
    const value = headers[headerName];
    // Node joins a repeated custom header with ", ", which no key can contain; an array
    // only comes from a caller that built the headers itself.
    const raw = Array.isArray(value) ? value.join(', ') : value;
    if (raw === undefined || raw.trim() === '') {
      return { ok: false, error: new KeywardError('missing_api_key') };
    }
    try {
      const result = await service.verify(raw.trim());
      return result.ok ? result : { ok: false, error: new KeywardError('invalid_api_key') };
    } catch (error) {
      return { ok: false, error: asKeywardError(error) };
    }
  }

  /** The guard's warm path: the cached key named by the header, with no promise; the
   * caller falls back to `authenticate` on `undefined`. */
  function authenticateCached(headers: HttpRequest['headers']): AuthenticatedKey | undefined {
    const value = headers[headerName];
    return typeof value === 'string' ? service.verifyCached(value.trim()) : undefined;
  }

  function asKeywardError(error: unknown): KeywardError {
    if (isKeywardError(error)) return error;
    service.options.onError(error);
    return new KeywardError('internal_error', { cause: error });
  }

  function errorResponse(error: unknown): HttpResponse {
    const e = asKeywardError(error);
    const response = jsonResponse(e.status, {
      success: false,
      error: { code: e.code, message: e.message },
    });
    if (e.status === 401) response.headers['WWW-Authenticate'] = wwwAuthenticate;
    if (e.retryAfter !== undefined) response.headers['Retry-After'] = String(e.retryAfter);
    // The rest of an oversized body is never read. Left on a kept-alive connection, it
    // would be drained to its end, however long, or, once reading stopped halfway, hold
    // up every later request on that connection: close it after the answer instead.
    if (e.code === 'payload_too_large') response.headers.Connection = 'close';
    return response;
  }

  /** Which route a path names, and the id in it; `null` outside the API. */
  function matchRoute(target: string): { route: Route; id: string } | null {
    const path = pathOf(target);
    if (!isMountPath(path)) return null;
    const rest = path.slice(mountPath.length).replace(/\/$/, '');
    const shape = rest === '' ? 'collection' : /^\/[^/]+$/.test(rest) ? 'item' : null;
    const route = routes.find((r) => r.shape === shape);
    if (!route) return null;
    return { route, id: shape === 'item' ? decodeSegment(rest.slice(1)) : '' };
  }

  function isMountPath(path: string): boolean {
    return path === mountPath || path.startsWith(`${mountPath}/`);
  }

  function isUnderMount(target: string): boolean {
    return isMountPath(pathOf(target));
  }

  async function handle(request: HttpRequest): Promise<HttpResponse> {
    try {
      const match = matchRoute(request.path);
      if (!match) return errorResponse(new KeywardError('not_found'));
      const method = request.method.toUpperCase();
      const action = match.route.actions[method === 'HEAD' ? 'GET' : method];
      if (!action) {
        const response = errorResponse(new KeywardError('method_not_allowed'));
        response.headers.Allow = allowedMethods(match.route);
        return response;
      }
      const auth = await authenticate(request.headers);
      if (!auth.ok) return errorResponse(auth.error);
      const body = action.readsBody ? await readJsonObject(request, maxBodyBytes) : {};
      return await action.run(service, { key: auth.key, id: match.id, body });
    } catch (error) {
      return errorResponse(error);
    }
  }

  return {
    mountPath,
    headerName,
    /** Serves one request under the mount path. */
    handle,
    /** True for paths the management API owns (the mount path and below). */
    owns: isUnderMount,
    /** The guard for the host's own routes. */
    authenticate,
    /** The guard's synchronous cache hit; `undefined` means: call `authenticate`. */
    authenticateCached,
    /** The shared error envelope for any error, with its status and headers. */
    errorResponse,
  };
}

export type HttpHandler = ReturnType<typeof createHttpHandler>;

function allowedMethods(route: Route): string {
  const methods = Object.keys(route.actions);
  if (methods.includes('GET')) methods.splice(methods.indexOf('GET') + 1, 0, 'HEAD');
  return methods.join(', ');
}

// RFC 9112 §3.2.2: a server must accept a target in absolute-form, as proxies send it.
const schemeAndAuthority = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;

/** The path of a request target: no scheme and authority, no query, no fragment. Node
 * passes a fragment through as sent; find-my-way already routes on the path without it. */
function pathOf(target: string): string {
  const path = target.replace(schemeAndAuthority, '');
  const end = path.search(/[?#]/);
  return end < 0 ? path : path.slice(0, end);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    // Not a valid percent-encoding: no key has such an id, so it reads as unknown.
    return '';
  }
}

const jsonMediaType = /^application\/json\s*(;|$)/i;
const charsetParam = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;

async function readJsonObject(
  request: HttpRequest,
  maxBodyBytes: number,
): Promise<Record<string, unknown>> {
  const contentType = headerValue(request.headers['content-type']) ?? '';
  const charset = charsetParam.exec(contentType)?.[1];
  if (!jsonMediaType.test(contentType) || (charset !== undefined && !/^utf-8$/i.test(charset))) {
    throw new KeywardError('unsupported_media_type');
  }
  const declared = Number(headerValue(request.headers['content-length']));
  if (declared > maxBodyBytes) throw new KeywardError('payload_too_large');
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.byteLength;
    if (size > maxBodyBytes) throw new KeywardError('payload_too_large');
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)));
  } catch {
    throw new KeywardError('invalid_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KeywardError('invalid_request', {
      message: 'The request body must be a JSON object.',
    });
  }
  const body = value as Record<string, unknown>;
  // Own properties only: `{"__proto__": …}` must not reach a name through the prototype.
  return { name: Object.hasOwn(body, 'name') ? body.name : undefined };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function jsonResponse(status: number, payload: unknown): HttpResponse {
  const body = JSON.stringify(payload);
  return {
    status,
    headers: {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    },
    body,
  };
}

function success(status: number, data: unknown): HttpResponse {
  return jsonResponse(status, { success: true, data });
}

/** The wire shape of a key: field order as in the spec, timestamps as ISO 8601 UTC. */
function toJson(key: ApiKey | CreatedApiKey) {
  return {
    id: key.id,
    name: key.name,
    ...('rawKey' in key ? { rawKey: key.rawKey } : {}),
    keyPrefix: key.keyPrefix,
    keySuffix: key.keySuffix,
    lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
    createdAt: key.createdAt.toISOString(),
  };
}
