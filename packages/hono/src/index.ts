import {
  type AuthenticatedKey,
  guardCost,
  type HttpOptions,
  type HttpRequest,
  type KeyService,
} from '@keyward/core';
import { createFetchHandler, type GuardOptions, type RawRequestParts } from '@keyward/fetch';
import type { Context, MiddlewareHandler } from 'hono';

export type { GuardOptions } from '@keyward/fetch';

declare module 'hono' {
  interface ContextVariableMap {
    /** The key that authenticated this request, set by keyward's `requireApiKey()`. */
    apiKey: AuthenticatedKey;
  }
}

/** The Hono `Env` of a route behind `requireApiKey()`: `c.get('apiKey')` is the key. */
export interface KeywardEnv {
  Variables: { apiKey: AuthenticatedKey };
}

/** `authorize(c)` gets Hono's `Context`: read the session with `getCookie(c, …)` or
 * `c.get(…)` from the host's own middleware. */
export interface KeywardHonoOptions extends HttpOptions<Context> {
  /** The key service (from `createKeyService`) the routes and the guard use. */
  service: KeyService;
  /** The client's address, for the public leak report route's per-client rate limit.
   * @default on Node (`@hono/node-server`), the socket's remote address; elsewhere none,
   * and all clients share one allowance: pass `getConnInfo(c).remote.address` from your
   * runtime's Hono adapter, or the address your trusted proxy forwards. */
  clientAddress?: (c: Context) => string | undefined;
}

export interface KeywardHono {
  /** Serves the management API under `mountPath` (the whole path: Hono hands every
   * middleware the full URL, wherever it is mounted); mount it with `app.use(routes)`.
   * Other requests go on to the next handler. */
  routes: MiddlewareHandler;
  /** Guard for the host's own routes: sets `c.get('apiKey')`, or answers 401/403/503 in
   * the shared error envelope. With `scopes`, the key must hold every one of them (`*`
   * holds all); without, any valid key will do. */
  requireApiKey(options?: GuardOptions): MiddlewareHandler<KeywardEnv>;
}

/**
 * keyward for Hono 4, on any runtime Hono runs on.
 *
 * ```ts
 * const auth = keyward({ service });
 * app.use(auth.routes);
 * app.get('/v1/me', auth.requireApiKey(), (c) => c.json(c.get('apiKey')));
 * ```
 */
export function keyward(options: KeywardHonoOptions): KeywardHono {
  const handler = createFetchHandler<Context>(options);

  const routes: MiddlewareHandler = async (c, next) => {
    const parts = nodeParts(c.env, c.req.raw) ?? {};
    const clientAddress = options.clientAddress
      ? options.clientAddress(c)
      : nodeSocketAddress(c.env);
    // c.req.raw's body stream is handed on unread: the leak alert route checks a signature
    // over its raw bytes (a middleware that ran c.req.json() first would have consumed it).
    const response = await handler.handle(
      c.req.raw,
      clientAddress === undefined ? parts : { ...parts, clientAddress },
      c,
    );
    if (response) return response;
    await next();
  };

  const guard = (scopes: readonly string[], cost: number): MiddlewareHandler<KeywardEnv> => {
    const guardOptions = { scopes, cost };
    return async (c, next) => {
      // On @hono/node-server, Node's parsed headers: c.req.raw.headers would build a
      // Headers object of every header for the one the guard reads.
      const parts = nodeParts(c.env, c.req.raw);
      let verdict = handler.check(c.req.raw, guardOptions, parts);
      if (verdict instanceof Promise) verdict = await verdict;
      if (!verdict.ok) return verdict.response;
      c.set('apiKey', verdict.key);
      const headers = verdict.headers;
      if (headers) {
        // A limited key's RateLimit fields. On node-server they go straight onto Node's
        // response, which merges them into whatever the handler answers: c.header() would
        // give the answer a Headers object and take it off node-server's fast path (10 to
        // 20 µs a request, measured by pnpm bench's guarded-limited).
        const outgoing = parts && nodeOutgoing(c.env);
        if (outgoing) for (const name in headers) outgoing.setHeader(name, headers[name] as string);
        else for (const name in headers) c.header(name, headers[name]);
      }
      await next();
    };
  };
  const anyKey = guard([], 1);

  return {
    routes,
    requireApiKey: (guardOptions = {}) => {
      const scopes = [...(guardOptions.scopes ?? [])];
      const cost = guardCost(guardOptions.cost);
      return scopes.length === 0 && cost === 1 ? anyKey : guard(scopes, cost);
    },
  };
}

/**
 * On Node (`@hono/node-server`), the request as Node parsed it, from the `incoming`
 * binding: the target before URL parsing resolved its dot segments, and the headers with
 * a repeated Content-Type cut to the first, as Express and Fastify see them. Only while
 * the `Request` still names that target: a sub-app under `app.mount()` gets a Request for
 * a rewritten URL, and that is the one it routes on. Elsewhere, nothing: the `Request` is
 * all there is.
 */
function nodeParts(env: unknown, request: Request): RawRequestParts | undefined {
  const incoming = (env as { incoming?: { url?: unknown; headers?: unknown } } | undefined)
    ?.incoming;
  if (typeof incoming?.url !== 'string' || typeof incoming.headers !== 'object') return undefined;
  const target = incoming.url;
  if (!request.url.endsWith(target) && !sameResource(target, request.url)) return undefined;
  return { target, headers: incoming.headers as HttpRequest['headers'] };
}

/** Node's response under `@hono/node-server`'s `outgoing` binding, while its head is unsent. */
function nodeOutgoing(env: unknown): NodeOutgoing | undefined {
  const outgoing = (env as { outgoing?: Partial<NodeOutgoing> } | undefined)?.outgoing;
  return typeof outgoing?.setHeader === 'function' && outgoing.headersSent === false
    ? (outgoing as NodeOutgoing)
    : undefined;
}

interface NodeOutgoing {
  headersSent: boolean;
  setHeader(name: string, value: string): unknown;
}

/** The remote address of the Node socket under `@hono/node-server`'s `incoming`. */
function nodeSocketAddress(env: unknown): string | undefined {
  const incoming = (env as { incoming?: { socket?: { remoteAddress?: unknown } } } | undefined)
    ?.incoming;
  const address = incoming?.socket?.remoteAddress;
  return typeof address === 'string' ? address : undefined;
}

/** Whether `target`, parsed as the runtime parses it, is `url` (fragments aside): only
 * reached when the two differ as written, a dot segment or an escaped character, say. */
function sameResource(target: string, url: string): boolean {
  try {
    return withoutFragment(new URL(target, url).href) === withoutFragment(url);
  } catch {
    return false;
  }
}

function withoutFragment(url: string): string {
  const hash = url.indexOf('#');
  return hash < 0 ? url : url.slice(0, hash);
}
