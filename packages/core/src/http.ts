import { dashboardAsset, dashboardPage, htmlErrorPage, signedOutPage } from './dashboard.js';
import { isKeywardError, KeywardError } from './errors.js';
import { holdsScopes, parseCost, parseScopes } from './key-fields.js';
import {
  type GitHubPublicKeys,
  gitHubFeedback,
  MAX_REPORTED_KEYS,
  parseGitHubAlert,
  readGitHubPublicKeys,
  verifyGitHubSignature,
} from './leak.js';
import { openApiDocument } from './openapi.js';
import { hasSameOriginProof, parseTrustedOrigins } from './origin.js';
import { OwnerLimit } from './owner-limit.js';
import type {
  ApiKey,
  AuthenticatedKey,
  CreatedApiKey,
  KeyService,
  LimitVerdict,
} from './service.js';

/** Who the host says is signed in: what `authorize` returns for a user of its own. */
export interface AuthorizedUser {
  /** The account whose keys the user manages. */
  ownerId: string;
  /** What the user may do on the management routes (and grant to keys it creates).
   * @default ['*'] */
  scopes?: readonly string[];
}

/** The host's sign-in check: the signed-in user, or `null` for none. `R` is the
 * framework's own request (Express `Request`, `FastifyRequest`, Fetch `Request`, Hono
 * `Context`). */
export type Authorize<R> = (
  request: R,
) => AuthorizedUser | null | undefined | Promise<AuthorizedUser | null | undefined>;

/** Core's HTTP layer, as an adapter uses it. */
export interface HttpHandler<R = HttpRequest> {
  /** The mount path, without a trailing slash. */
  readonly mountPath: string;
  /** The key header's name, lower-cased. */
  readonly headerName: string;
  /** Serves one request under the mount path: every answer, errors included. `original`
   * is the framework's own request, handed to `authorize` (default: `request`). */
  handle(request: HttpRequest, original?: R): Promise<HttpResponse>;
  /** True for request targets the management API owns (the mount path and below). */
  owns(target: string): boolean;
  /** The guard: reads the key header and verifies it; never throws. */
  authenticate(headers: HttpRequest['headers']): Promise<AuthResult>;
  /** The guard's synchronous cache hit; `undefined` means: call `authenticate`. */
  authenticateCached(headers: HttpRequest['headers']): AuthenticatedKey | undefined;
  /** The shared error envelope for any error, with its status and headers. */
  errorResponse(error: unknown): HttpResponse;
  /** The 403 `insufficient_scope` answer when a verified key lacks one of `needed`;
   * `undefined` when it holds them all. */
  checkScopes(key: AuthenticatedKey, needed: readonly string[]): HttpResponse | undefined;
  /**
   * The whole guard for a host route, for adapters: the cached key at once (no promise),
   * else a full verification; then the scope check, then the key's rate limit and credits
   * (spending `cost`, default 1: see `guardCost`). Calls exactly one of `admit` and
   * `refuse`; `fail` gets what an adapter callback or the host threw (with `admitted`
   * telling whether the request had already been let through).
   */
  guard(
    headers: HttpRequest['headers'],
    scopes: readonly string[],
    outcome: GuardOutcome,
    cost?: number,
  ): void;
}

/** What an adapter does with the guard's verdict. */
export interface GuardOutcome {
  /** `headers`: the rate-limit header fields to add to the host's answer (a key with a
   * limit), else `undefined`. */
  admit(key: AuthenticatedKey, headers: Record<string, string> | undefined): void;
  refuse(response: HttpResponse): void;
  fail(error: unknown, admitted: boolean): void;
}

/** What an adapter hands to core: the parts of a request keyward reads. */
export interface HttpRequest {
  method: string;
  /** The request target's path, still percent-encoded. A query string or fragment, and
   * the scheme and authority of an absolute-form target (`http://host/v1/api-keys`), may
   * be left on: core ignores them. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The raw body, read only after the key is verified and the media type accepted. Its
   * bytes exactly as sent: the leak alert route checks a signature over them. */
  body: AsyncIterable<Uint8Array>;
  /** The client's address (the framework's idea of it, so behind a proxy as its
   * trust-proxy setting says), for the public report route's rate limit. Requests
   * without one share a single allowance. */
  clientAddress?: string;
}

/** What core hands back: adapters write it as is, so every framework sends the same bytes. */
export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface HttpOptions<R = HttpRequest> {
  /** Where the management routes live. @default '/v1/api-keys' */
  mountPath?: string;
  /** The request header holding the key (case-insensitive). @default 'X-API-Key' */
  headerName?: string;
  /** Largest accepted request body, in bytes. @default 16384 */
  maxBodyBytes?: number;
  /** Leak response routes (docs/design.md, "Leak response"); none is served unless set
   * here. What happens to a leaked key is the key service's `leaks` option. */
  leaks?: {
    /** `POST <mountPath>/leaks/github`: GitHub's secret-scanning alerts. */
    github?: {
      /** GitHub's public keys, as `https://api.github.com/meta/public_keys/secret_scanning`
       * returns them (the object or its JSON text). keyward never fetches them: refresh
       * them yourself and make a new handler. */
      publicKeys: GitHubPublicKeys | string;
      /** Largest alert body, in bytes; past it, 413. @default 65536 */
      maxBodyBytes?: number;
      /** Most matches in one alert; past it, 413. @default 100 */
      maxMatches?: number;
    };
    /** `POST <mountPath>/report-leak`: anyone may report keys they found, with no key of
     * their own. `true` for the defaults. */
    reportRoute?:
      | boolean
      | {
          /** Requests one client address may make per minute; past it, 429. @default 10 */
          requestsPerMinute?: number;
        };
  };
  /**
   * The host's own sign-in, for requests to the management routes that carry no key
   * header: return `{ ownerId, scopes? }` for a signed-in user, `null` for none (401
   * `missing_api_key`). A key header, when present, decides instead. What it throws is
   * a 500 `internal_error` through `onError`, never access. Writes it admits need
   * same-origin proof (`Sec-Fetch-Site: same-origin`, or an `Origin` in
   * `trustedOrigins`), else 403 `forbidden_origin` before the body is read.
   * @default none: only keys manage keys
   */
  authorize?: Authorize<R>;
  /**
   * Origins (`https://app.example.com`) whose pages may write through a session that
   * `authorize` admitted. @default the request's own origin, from its `Host` header
   */
  trustedOrigins?: readonly string[];
  /** Serve the key-management page at `<mountPath>/dashboard` (needs `authorize`).
   * @default false */
  dashboard?: boolean;
}

export type AuthResult = { ok: true; key: AuthenticatedKey } | { ok: false; error: KeywardError };

/** Who a management request acts for: a key, or a user the host's `authorize` admitted
 * (`keyId: null`). */
interface Caller {
  ownerId: string;
  scopes: readonly string[];
  keyId: string | null;
  /** The key that made the request; absent for a user the host's `authorize` admitted. */
  key?: AuthenticatedKey;
}

interface ActionContext {
  caller: Caller;
  id: string;
  body: RequestFields;
  query: URLSearchParams;
}

/** The body fields the routes read: own properties only, so `{"__proto__": …}` cannot
 * reach one through the prototype. */
type RequestFields = Partial<Record<(typeof bodyFields)[number], unknown>>;
const bodyFields = [
  'name',
  'expiresAt',
  'expiresIn',
  'scopes',
  'metadata',
  'rateLimit',
  'credits',
  'keys',
] as const;

/** Keys reported on the public route waiting to be checked, at most; past it, further
 * ones are dropped (and `onError` told), so a flood cannot grow memory. */
const MAX_PENDING_REPORTS = 1000;
/** Client addresses whose report-route requests in the current minute are counted. */
const REPORT_WINDOW_ADDRESSES = 10_000;

/** Reads a key's own account's keys; writing implies reading. */
const READ_SCOPES = ['api_keys:read', 'api_keys:write'] as const;
/** What a key marked leaked never holds, whatever its scopes say. */
const MANAGEMENT_SCOPES: readonly string[] = READ_SCOPES;
const WRITE_SCOPES = ['api_keys:write'] as const;

interface Action {
  /** Reads and validates a JSON object body before running: always, or only when one
   * was sent (roll's body is optional). */
  readsBody: boolean | 'optional';
  /** Any one of these scopes admits the request (`*` holds all). */
  scopes: readonly string[];
  run(service: KeyService, ctx: ActionContext): Promise<HttpResponse>;
}

interface Route {
  /** `collection` is the mount path itself; `item` is one segment below it (the id);
   * `roll` is `<id>/roll`. */
  shape: 'collection' | 'item' | 'roll';
  actions: Partial<Record<string, Action>>;
}

/** The management API, as data: every adapter walks this one table. */
const routes: readonly Route[] = [
  {
    shape: 'collection',
    actions: {
      GET: {
        readsBody: false,
        scopes: READ_SCOPES,
        run: async (service, { caller }) =>
          success(200, (await service.list(caller.ownerId)).map(keyToJson)),
      },
      POST: {
        readsBody: true,
        scopes: WRITE_SCOPES,
        run: async (service, { caller, body }) => {
          refuseLimitedGrantor(caller);
          const created = await service.create(caller.ownerId, body.name, {
            expiresAt: body.expiresAt,
            expiresIn: body.expiresIn,
            // Omitted: the caller's own scopes. No caller grants more than it holds.
            scopes: body.scopes === undefined ? [...caller.scopes] : body.scopes,
            metadata: body.metadata,
            rateLimit: body.rateLimit,
            credits: body.credits,
            // A key made by a signed-in user belongs to no key: no cascade reaches it.
            createdBy: caller.keyId,
            grantableScopes: caller.scopes,
          });
          return success(201, keyToJson(created));
        },
      },
    },
  },
  {
    shape: 'item',
    actions: {
      PATCH: {
        readsBody: true,
        scopes: WRITE_SCOPES,
        run: async (service, { caller, id, body }) => {
          if (body.rateLimit !== undefined || body.credits !== undefined) {
            refuseLimitedGrantor(caller);
          }
          const updated = await service.update(caller.ownerId, id, body);
          if (!updated) throw new KeywardError('not_found');
          return success(200, keyToJson(updated));
        },
      },
      DELETE: {
        readsBody: false,
        scopes: WRITE_SCOPES,
        run: async (service, { caller, id, query }) => {
          if (!readCascade(query)) {
            if (!(await service.revoke(caller.ownerId, id))) throw new KeywardError('not_found');
            return jsonResponse(200, { success: true });
          }
          const revoked = await service.revokeCascade(caller.ownerId, id);
          if (revoked.length === 0) throw new KeywardError('not_found');
          return jsonResponse(200, { success: true, revoked });
        },
      },
    },
  },
  {
    shape: 'roll',
    actions: {
      POST: {
        readsBody: 'optional',
        scopes: WRITE_SCOPES,
        run: async (service, { caller, id, body }) => {
          const rolled = await service.roll(caller.ownerId, id, {
            expiresIn: body.expiresIn,
            scopes: body.scopes,
            grantableScopes: caller.scopes,
          });
          if (!rolled) throw new KeywardError('not_found');
          return success(201, keyToJson(rolled));
        },
      },
    },
  },
];

/**
 * A key that is itself limited (a rate limit or credits) may not make keys or set limits
 * over HTTP: a new key, or a raised balance, would be a way around its own limits. The
 * host's code, its signed-in users, and keys without limits, may.
 */
function refuseLimitedGrantor({ key }: Caller): void {
  if (!key || (key.rateLimit === null && key.credits === null)) return;
  throw new KeywardError('insufficient_scope', {
    message: 'A key with a rate limit or credits cannot create keys or change limits.',
  });
}

/** `?cascade=true` or `?cascade=false`; absent is false. */
function readCascade(query: URLSearchParams): boolean {
  const values = query.getAll('cascade');
  if (values.length === 0) return false;
  if (values.length === 1 && (values[0] === 'true' || values[0] === 'false')) {
    return values[0] === 'true';
  }
  throw new KeywardError('invalid_request', {
    message: '`cascade` must be "true" or "false", given once.',
  });
}

/**
 * The framework-agnostic HTTP layer: the management routes and the guard, with the checks
 * in their order (docs/design.md: route → key → scope → media type → size → JSON → fields →
 * resource). Adapters translate their request into an `HttpRequest` and write back the
 * `HttpResponse`; nothing else.
 */
export function createHttpHandler<R = HttpRequest>(
  service: KeyService,
  options: HttpOptions<R> = {},
): HttpHandler<R> {
  const mountPath = (options.mountPath ?? '/v1/api-keys').replace(/\/+$/, '');
  if (!mountPath.startsWith('/')) {
    throw new TypeError(`keyward: mountPath must start with "/"; got ${options.mountPath}.`);
  }
  const headerName = (options.headerName ?? 'X-API-Key').toLowerCase();
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024;
  const wwwAuthenticate = `ApiKey header="${options.headerName ?? 'X-API-Key'}"`;
  const { authorize } = options;
  const trustedOrigins = parseTrustedOrigins(options.trustedOrigins);
  if (options.dashboard && !authorize) {
    throw new TypeError(
      'keyward: dashboard: true needs an authorize(request) option: the page is for the signed-in users of the host app.',
    );
  }
  const api = openApiDocument({
    mountPath,
    headerName: options.headerName ?? 'X-API-Key',
    dashboard: options.dashboard === true,
    leaks: { github: !!options.leaks?.github, reportRoute: !!options.leaks?.reportRoute },
  });
  const apiJson = JSON.stringify(api);

  /** The 403 for a valid key that lacks a scope, naming what would do. */
  function insufficientScope(needed: readonly string[]): HttpResponse {
    const response = errorResponse(new KeywardError('insufficient_scope'));
    response.headers['WWW-Authenticate'] =
      `${wwwAuthenticate}, error="insufficient_scope", scope="${needed.join(' ')}"`;
    return response;
  }

  /** `undefined` when `key` holds every scope in `needed`, else the 403 to send. For the
   * host's guards: `requireApiKey({ scopes })`. */
  function checkScopes(key: AuthenticatedKey, needed: readonly string[]): HttpResponse | undefined {
    if (key.leakedAt !== null && needed.some((scope) => MANAGEMENT_SCOPES.includes(scope))) {
      // A quarantined key holds no management scope, on the host's routes either.
      return insufficientScope(needed);
    }
    return holdsScopes(key.scopes, needed) ? undefined : insufficientScope(needed);
  }

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
    if (e.code === 'missing_api_key' || e.code === 'invalid_api_key') {
      response.headers['WWW-Authenticate'] = wwwAuthenticate;
    }
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
    const shape =
      rest === ''
        ? 'collection'
        : /^\/[^/]+$/.test(rest)
          ? 'item'
          : /^\/[^/]+\/roll$/.test(rest)
            ? 'roll'
            : null;
    const route = routes.find((r) => r.shape === shape);
    if (!route) return null;
    return { route, id: shape === 'collection' ? '' : decodeSegment(rest.split('/')[1] ?? '') };
  }

  function isMountPath(path: string): boolean {
    return path === mountPath || path.startsWith(`${mountPath}/`);
  }

  function isUnderMount(target: string): boolean {
    return isMountPath(pathOf(target));
  }

  async function handle(request: HttpRequest, original?: R): Promise<HttpResponse> {
    try {
      const leakRoute = leakRoutes?.match(pathOf(request.path));
      if (leakRoute) return await leakRoute(request);
      const method = request.method.toUpperCase();
      const own = ownPage(request.path, method);
      if (own) return await own(request, original);
      const match = matchRoute(request.path);
      if (!match) return errorResponse(new KeywardError('not_found'));
      const action = match.route.actions[method === 'HEAD' ? 'GET' : method];
      if (!action) {
        const response = errorResponse(new KeywardError('method_not_allowed'));
        response.headers.Allow = allowedMethods(match.route);
        return response;
      }
      const admitted = await admit(request, original);
      if (!admitted.ok) return errorResponse(admitted.error);
      const { caller } = admitted;
      if (caller.key?.leakedAt) {
        // Quarantined: the key works on the host's routes until its shortened expiry, but
        // manages nothing; another key of the account, or the signed-in user, rolls or
        // revokes it.
        const response = insufficientScope(action.scopes.slice(0, 1));
        response.body = JSON.stringify({
          success: false,
          error: { code: 'insufficient_scope', message: LEAKED_KEY_MESSAGE },
        });
        response.headers['Content-Length'] = String(Buffer.byteLength(response.body));
        return withLimitFields(response, caller.key);
      }
      if (!action.scopes.some((scope) => holdsScopes(caller.scopes, [scope]))) {
        return withLimitFields(insufficientScope(action.scopes.slice(0, 1)), caller.key);
      }
      const { key } = caller;
      if (!key || (key.rateLimit === null && key.credits === null)) {
        return await runAction(request, action, caller, match.id);
      }
      const verdict = await service.checkLimits(key, 1);
      if (!verdict.ok) return refusedByLimits(verdict);
      const response = await runAction(request, action, caller, match.id);
      if (response.status < 400) return withHeaders(response, verdict.headers);
      // Refused after all (its body, its target, this key's own powers): it costs nothing,
      // and its fields say so.
      service.refundLimits(key, 1);
      return withLimitFields(response, key);
    } catch (error) {
      return errorResponse(error);
    }
  }

  /** The action, past the key, scope and limit checks: what a limited key's answer, error
   * or not, carries the rate-limit fields on. */
  async function runAction(
    request: HttpRequest,
    action: Action,
    caller: Caller,
    id: string,
  ): Promise<HttpResponse> {
    try {
      const query = queryOf(request.path);
      const readsBody =
        action.readsBody === 'optional' ? hasBody(request.headers) : action.readsBody;
      const body = readsBody ? await readJsonObject(request, maxBodyBytes) : {};
      return await action.run(service, { caller, id, body, query });
    } catch (error) {
      return errorResponse(error);
    }
  }

  const leakRoutes =
    options.leaks?.github || options.leaks?.reportRoute
      ? createLeakRoutes(service, mountPath, options.leaks, errorResponse)
      : undefined;
  /** A refusal that spent nothing, with the rate-limit fields when a limited key made it:
   * every answer to such a key carries them. */
  function withLimitFields(response: HttpResponse, key: AuthenticatedKey | undefined) {
    return key?.rateLimit ? withHeaders(response, service.limitHeaders(key)) : response;
  }

  /** The 429 (or 503) for a request the key's limit or credits refuse. */
  function refusedByLimits(verdict: Extract<LimitVerdict, { ok: false }>): HttpResponse {
    return withHeaders(errorResponse(verdict.error), verdict.headers);
  }

  /**
   * Who a management request acts for (docs/design.md, "Host sign-in"): the key when a key
   * header is present; otherwise the host's `authorize`, whose writes must come from the
   * host's own pages. Runs before any body is read.
   */
  async function admit(
    request: HttpRequest,
    original: R | undefined,
  ): Promise<{ ok: true; caller: Caller } | { ok: false; error: KeywardError }> {
    if (!authorize || request.headers[headerName] !== undefined) {
      const auth = await authenticate(request.headers);
      if (!auth.ok) return auth;
      const { key } = auth;
      return { ok: true, caller: { ownerId: key.ownerId, scopes: key.scopes, keyId: key.id, key } };
    }
    const user = await signedInUser(request, original);
    if (!user) return { ok: false, error: new KeywardError('missing_api_key') };
    const method = request.method.toUpperCase();
    if (
      method !== 'GET' &&
      method !== 'HEAD' &&
      !hasSameOriginProof(request.headers, trustedOrigins)
    ) {
      return { ok: false, error: new KeywardError('forbidden_origin') };
    }
    return { ok: true, caller: { ...user, keyId: null } };
  }

  /** The host's `authorize` answer, checked: what it throws, or an answer that names no
   * account, goes to `onError` as a 500 (never access). */
  async function signedInUser(
    request: HttpRequest,
    original: R | undefined,
  ): Promise<{ ownerId: string; scopes: readonly string[] } | null> {
    if (!authorize) return null;
    const user = await authorize(original ?? (request as R));
    if (user === null || user === undefined) return null;
    if (typeof user.ownerId !== 'string' || user.ownerId === '') {
      throw new TypeError('keyward: authorize() must return { ownerId: string, scopes? } or null.');
    }
    let scopes: readonly string[] = ['*'];
    if (user.scopes !== undefined) {
      try {
        scopes = parseScopes(user.scopes);
      } catch (error) {
        throw new TypeError(
          `keyward: authorize() returned invalid scopes: ${(error as Error).message}`,
        );
      }
    }
    return { ownerId: user.ownerId, scopes };
  }

  /** The routes under the mount path that are not the key API: the API description, and
   * the dashboard page with its assets. */
  function ownPage(
    target: string,
    method: string,
  ): ((request: HttpRequest, original: R | undefined) => Promise<HttpResponse>) | undefined {
    if (method !== 'GET' && method !== 'HEAD') return undefined;
    const path = pathOf(target);
    if (!isMountPath(path)) return undefined;
    const rest = path.slice(mountPath.length);
    if (rest === '/openapi.json') {
      return async () => ({
        status: 200,
        headers: {
          'Content-Type': 'application/json; charset=utf-8',
          'Content-Length': String(Buffer.byteLength(apiJson)),
          'Cache-Control': 'no-cache',
          'X-Content-Type-Options': 'nosniff',
        },
        body: apiJson,
      });
    }
    if (!options.dashboard) return undefined;
    if (rest === '/dashboard') return servePage;
    if (rest.startsWith('/dashboard/')) {
      const asset = dashboardAsset(rest.slice('/dashboard/'.length));
      return async () => asset ?? htmlErrorPage(404);
    }
    return undefined;
  }

  /** The page needs a signed-in user; a key header is ignored here (a browser sends none). */
  async function servePage(request: HttpRequest, original: R | undefined): Promise<HttpResponse> {
    let user: { ownerId: string } | null;
    try {
      user = await signedInUser(request, original);
    } catch (error) {
      service.options.onError(error);
      return htmlErrorPage(500);
    }
    return user ? dashboardPage(user.ownerId) : signedOutPage();
  }

  function guard(
    headers: HttpRequest['headers'],
    scopes: readonly string[],
    outcome: GuardOutcome,
    cost = 1,
  ): void {
    // The warm path allocates nothing here: no closure, no promise.
    const cached = authenticateCached(headers);
    if (cached) {
      settle(cached, scopes, outcome, cost);
      return;
    }
    let admitted = false;
    authenticate(headers)
      .then((result) => {
        if (!result.ok) {
          outcome.refuse(errorResponse(result.error));
          return;
        }
        admitted = true;
        settle(result.key, scopes, outcome, cost);
      })
      .catch((error: unknown) => outcome.fail(error, admitted));
  }

  function settle(
    key: AuthenticatedKey,
    scopes: readonly string[],
    outcome: GuardOutcome,
    cost: number,
  ): void {
    const refusal = scopes.length === 0 ? undefined : checkScopes(key, scopes);
    if (refusal) {
      // Every answer to a limited key carries its fields; this one spent nothing.
      outcome.refuse(withLimitFields(refusal, key));
      return;
    }
    if (key.rateLimit === null && key.credits === null) {
      outcome.admit(key, undefined);
      return;
    }
    let verdict: LimitVerdict | Promise<LimitVerdict>;
    try {
      verdict = service.checkLimits(key, cost);
    } catch (error) {
      outcome.refuse(errorResponse(error));
      return;
    }
    if (verdict instanceof Promise) {
      let decided = false;
      verdict
        .then(
          (v) => {
            decided = true;
            decide(key, v, outcome);
          },
          (error: unknown) => {
            decided = true;
            outcome.refuse(errorResponse(error));
          },
        )
        .catch((error: unknown) => outcome.fail(error, decided));
    } else {
      decide(key, verdict, outcome);
    }
  }

  function decide(key: AuthenticatedKey, verdict: LimitVerdict, outcome: GuardOutcome): void {
    if (verdict.ok) outcome.admit(key, verdict.headers);
    else outcome.refuse(refusedByLimits(verdict));
  }

  return {
    guard,
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
    /** The 403 `insufficient_scope` answer when a verified key lacks a scope a route
     * needs; `undefined` when it holds them all. */
    checkScopes,
  };
}

function withHeaders(
  response: HttpResponse,
  headers: Record<string, string> | undefined,
): HttpResponse {
  if (headers) Object.assign(response.headers, headers);
  return response;
}

/** A route's `cost` option, checked once when the guard is made. */
export function guardCost(cost: unknown): number {
  return parseCost(cost);
}

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

/** The query of a request target, `?` to the fragment. */
function queryOf(target: string): URLSearchParams {
  const start = target.indexOf('?');
  if (start < 0) return new URLSearchParams();
  const end = target.indexOf('#', start);
  return new URLSearchParams(target.slice(start + 1, end < 0 ? undefined : end));
}

/** Whether a request carries a body (RFC 9112 §6.3: a length above 0, or chunked). */
function hasBody(headers: HttpRequest['headers']): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headerValue(headers['content-length']);
  return length !== undefined && Number(length) > 0;
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
  const raw = await readRawBody(request, maxBodyBytes);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch {
    throw new KeywardError('invalid_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KeywardError('invalid_request', {
      message: 'The request body must be a JSON object.',
    });
  }
  const body = value as Record<string, unknown>;
  const fields: RequestFields = {};
  for (const field of bodyFields) {
    if (Object.hasOwn(body, field)) fields[field] = body[field];
  }
  return fields;
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

/** The wire shape of a key, as every answer shows it: the v1 fields, then the lifecycle
 * ones, timestamps as ISO 8601 UTC. Exported for hosts and tools that print keys the way
 * the API does. */
export function keyToJson(key: ApiKey | CreatedApiKey) {
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
    rateLimit: key.rateLimit && { limit: key.rateLimit.limit, windowSec: key.rateLimit.windowSec },
    credits: key.credits && {
      remaining: key.credits.remaining,
      refill: key.credits.refill && {
        amount: key.credits.refill.amount,
        every: key.credits.refill.every,
      },
      strict: key.credits.strict,
    },
    leakedAt: key.leakedAt?.toISOString() ?? null,
    leakSource: key.leakSource,
  };
}

const LEAKED_KEY_MESSAGE =
  'This API key was reported leaked: it can no longer manage keys. Use another key of the account to roll or revoke it.';

/**
 * The leak routes (docs/design.md, "Leak response"), outside the management table: neither
 * takes an API key. `match` gives the handler for a path, or `undefined`.
 */
function createLeakRoutes(
  service: KeyService,
  mountPath: string,
  leaks: NonNullable<HttpOptions['leaks']>,
  errorResponse: (error: unknown) => HttpResponse,
) {
  const routes = new Map<string, (request: HttpRequest) => Promise<HttpResponse>>();
  const onError = service.options.onError;

  if (leaks.github) {
    const publicKeys = readGitHubPublicKeys(leaks.github.publicKeys);
    const maxBytes = leaks.github.maxBodyBytes ?? 64 * 1024;
    const maxMatches = leaks.github.maxMatches ?? 100;
    routes.set(`${mountPath}/leaks/github`, async (request) => {
      const refused = onlyPost(request);
      if (refused) return refused;
      // The headers first: an unsigned request is refused before its body is read.
      const identifier = headerValue(request.headers['github-public-key-identifier']);
      const signature = headerValue(request.headers['github-public-key-signature']);
      if (!identifier || !signature || !publicKeys.has(identifier.trim())) {
        return errorResponse(new KeywardError('invalid_signature'));
      }
      const body = await readRawBody(request, maxBytes);
      if (!verifyGitHubSignature(publicKeys, identifier, signature, body)) {
        return errorResponse(new KeywardError('invalid_signature'));
      }
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(body);
      } catch {
        throw new KeywardError('invalid_json');
      }
      const alert = parseGitHubAlert(text, maxMatches);
      if (!alert.ok) {
        throw alert.reason === 'too_many'
          ? new KeywardError('payload_too_large', {
              message: `An alert may hold at most ${maxMatches} matches.`,
            })
          : new KeywardError('invalid_request', {
              message: 'The alert must be a JSON array of { token, type, url }.',
            });
      }
      // One at a time, in order: each real key costs an argon2 run, and the guard's
      // verifications go first for every slot.
      const feedback = [];
      for (const match of alert.matches) {
        const outcome = await service.reportLeak(match.token, { source: 'github', url: match.url });
        feedback.push(gitHubFeedback(match, outcome !== null));
      }
      return jsonResponse(200, feedback);
    });
  }

  if (leaks.reportRoute) {
    const settings = leaks.reportRoute === true ? {} : leaks.reportRoute;
    const perMinute = settings.requestsPerMinute ?? 10;
    if (!Number.isSafeInteger(perMinute) || perMinute < 1) {
      throw new TypeError(
        `keyward: \`leaks.reportRoute.requestsPerMinute\` must be a positive integer; got ${perMinute}.`,
      );
    }
    const limit = new OwnerLimit(perMinute, 60_000, REPORT_WINDOW_ADDRESSES);
    const pending: string[] = [];
    let draining = false;

    // Reported keys are checked after the answer, one at a time: the answer's bytes and
    // timing say nothing of what was sent (docs/design.md, "Leak response").
    const drain = async (): Promise<void> => {
      if (draining) return;
      draining = true;
      try {
        for (let key = pending.shift(); key !== undefined; key = pending.shift()) {
          await service.reportLeak(key, { source: 'report' }).catch(onError);
        }
      } finally {
        draining = false;
      }
    };

    routes.set(`${mountPath}/report-leak`, async (request) => {
      const refused = onlyPost(request);
      if (refused) return refused;
      const retryAfter = limit.take(request.clientAddress ?? '');
      if (retryAfter !== undefined) throw new KeywardError('rate_limited', { retryAfter });
      const { keys } = await readJsonObject(request, 16 * 1024);
      if (
        !Array.isArray(keys) ||
        keys.length > MAX_REPORTED_KEYS ||
        !keys.every((key) => typeof key === 'string' && key.length <= 512)
      ) {
        throw new KeywardError('invalid_request', {
          message: `\`keys\` must be an array of at most ${MAX_REPORTED_KEYS} strings.`,
        });
      }
      const fresh = [...new Set(keys as string[])];
      const room = MAX_PENDING_REPORTS - pending.length;
      if (fresh.length > room) {
        onError(
          new Error(
            `keyward: ${fresh.length - Math.max(room, 0)} reported keys were dropped: more than ${MAX_PENDING_REPORTS} are waiting to be checked.`,
          ),
        );
      }
      pending.push(...fresh.slice(0, Math.max(room, 0)));
      void drain();
      return success(202, { received: keys.length });
    });
  }

  function onlyPost(request: HttpRequest): HttpResponse | undefined {
    if (request.method.toUpperCase() === 'POST') return undefined;
    const response = errorResponse(new KeywardError('method_not_allowed'));
    response.headers.Allow = 'POST';
    return response;
  }

  return { match: (path: string) => routes.get(path.replace(/\/$/, '')) };
}

/** The body's bytes as sent, at most `maxBytes` (else 413). */
async function readRawBody(request: HttpRequest, maxBytes: number): Promise<Buffer> {
  const declared = Number(headerValue(request.headers['content-length']));
  if (declared > maxBytes) throw new KeywardError('payload_too_large');
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new KeywardError('payload_too_large');
    chunks.push(chunk);
  }
  if (size === 0 && declared > 0) {
    // The stream ended with none of the declared bytes: something read it before keyward
    // did. A host bug, not the client's: 500, and onError says how to fix it.
    throw new Error(
      "keyward: the request body was already read before keyward saw it: a body parser (express.json(), for example) runs before keyward's router. Mount the router first, or the parser on your own routes only.",
    );
  }
  return Buffer.concat(chunks);
}
