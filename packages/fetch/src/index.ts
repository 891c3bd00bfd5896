import {
  type AuthenticatedKey,
  createHttpHandler,
  type GuardOutcome,
  guardCost,
  type HttpOptions,
  type HttpRequest,
  type HttpResponse,
  type KeyService,
} from '@keyward/core';

/** `authorize(request)` gets the `Request` (or, through `handle`'s third argument, the
 * framework's own context, as @keyward/hono passes Hono's `Context`). */
export interface KeywardFetchOptions<R = Request> extends HttpOptions<R> {
  /** The key service (from `createKeyService`) the routes and the guard use. */
  service: KeyService;
}

export interface GuardOptions {
  /** Scopes the key must hold, all of them (`*` holds all). @default [] */
  scopes?: readonly string[];
  /** Units of the key's rate limit and credits this request spends. @default 1 */
  cost?: number;
}

/** The guard's verdict: the key (and, for a key with a rate limit, the `RateLimit-Policy`
 * and `RateLimit` header fields to add to the host's answer: `withLimitHeaders`), or the
 * answer to send instead of the host's route. */
export type GuardResult =
  | { ok: true; key: AuthenticatedKey; headers: Record<string, string> | undefined }
  | { ok: false; response: Response };

/**
 * What the runtime saw of the request before it became a `Request`, where it has it. A
 * `Request`'s url is a parsed URL (dot segments resolved: `/v1/api-keys/..` reads as
 * `/v1/`), and its headers join repeated ones (two Content-Types read as one list). An
 * adapter on Node passes the IncomingMessage's `url` and `headers`, so that keyward sees
 * what it sees under Express and Fastify, and answers the same bytes.
 */
export interface RawRequestParts {
  /** The request target as received (`incoming.url` on Node). */
  target?: string;
  /** The headers as Node parsed them (`incoming.headers`): lower-cased names. */
  headers?: HttpRequest['headers'];
  /** The client's address, for the public leak report route's per-client rate limit
   * (`incoming.socket.remoteAddress` on Node, `server.requestIP(request)` on Bun, or the
   * address a trusted proxy forwarded). Without it, all clients share one allowance. */
  clientAddress?: string;
}

export interface KeywardFetch<R = Request> {
  /** The mount path, without a trailing slash. */
  readonly mountPath: string;
  /**
   * Serves the management API: the answer for a request under `mountPath` (errors
   * included, in the shared envelope), `null` for any other, which is the host's to serve.
   * The body is read only after the key is verified and the media type accepted.
   */
  handle(request: Request, raw?: RawRequestParts, original?: R): Promise<Response | null>;
  /**
   * Guard for the host's own routes: the verified key, or the 401/403/429/503 to send in
   * the shared error envelope. A key with a rate limit also gets `headers` to add to the
   * answer (`withLimitHeaders(response, verdict)`). With `scopes`, the key must hold every one of them; without,
   * any valid key will do. A key in the cache is checked without touching the store.
   * `raw.headers`, when given (Node's `incoming.headers`), is read instead of
   * `request.headers`: on @hono/node-server that spares building a `Headers` object.
   */
  guard(request: Request, options?: GuardOptions, raw?: RawRequestParts): Promise<GuardResult>;
  /**
   * `guard`, with the verdict for a key in the cache handed back as it is rather than in a
   * promise: for a middleware on the hot path (the Hono adapter's), where a promise and
   * the turn of the event loop's microtask queue it waits for are a measurable part of
   * the guard's cost. A key not in the cache still gets a promise.
   */
  check(
    request: Request,
    options?: GuardOptions,
    raw?: RawRequestParts,
  ): GuardResult | Promise<GuardResult>;
}

/**
 * keyward over the Fetch API's `Request` and `Response`: for Hono, Bun, Deno, Cloudflare
 * Workers, Next.js route handlers and any server that speaks them.
 *
 * ```ts
 * const auth = createFetchHandler({ service });
 * export default {
 *   async fetch(request: Request) {
 *     const answer = await auth.handle(request);
 *     if (answer) return answer;
 *     const verdict = await auth.guard(request);
 *     if (!verdict.ok) return verdict.response;
 *     return Response.json({ hello: verdict.key.ownerId });
 *   },
 * };
 * ```
 */
export function createFetchHandler<R = Request>(options: KeywardFetchOptions<R>): KeywardFetch<R> {
  const http = createHttpHandler<R>(options.service, options);
  const headerName = http.headerName;

  async function handle(
    request: Request,
    raw: RawRequestParts = {},
    original?: R,
  ): Promise<Response | null> {
    // The absolute URL as is: core reads an absolute-form target (scheme and authority
    // left on) as its path and query, with no URL parsed per request.
    const target = raw.target ?? request.url;
    if (!http.owns(target)) return null;
    const response = await http.handle(
      {
        method: request.method,
        path: target,
        headers: raw.headers ?? headersOf(request),
        // A body something already read (a middleware's `await c.req.json()`) is gone:
        // handed over as empty, core tells onError to mount keyward before the reader, where
        // the stream would only throw an ERR_INVALID_STATE TypeError.
        // The stream's bytes are handed on untouched: the leak alert route checks a
        // signature over them.
        body: request.bodyUsed ? noBody : (request.body ?? noBody),
        ...(raw.clientAddress === undefined ? {} : { clientAddress: raw.clientAddress }),
      },
      original ?? (request as R),
    );
    return toResponse(response);
  }

  function check(
    request: Request,
    options: GuardOptions = {},
    raw?: RawRequestParts,
  ): GuardResult | Promise<GuardResult> {
    // Only the key header is read: no record of every header for each guarded request
    // (Node's own record, when the runtime handed it over, is read as it is).
    let headers: HttpRequest['headers'];
    if (raw?.headers) {
      headers = raw.headers;
    } else {
      const value = request.headers.get(headerName);
      headers = value === null ? {} : { [headerName]: value };
    }
    const cost = options.cost === undefined ? 1 : guardCost(options.cost);
    const outcome = new Outcome();
    http.guard(headers, options.scopes ?? [], outcome, cost);
    return outcome.result ?? outcome.later();
  }

  function guard(
    request: Request,
    options?: GuardOptions,
    raw?: RawRequestParts,
  ): Promise<GuardResult> {
    // A bad `cost` (a programming error) still throws here, as it is called.
    return Promise.resolve(check(request, options, raw));
  }

  return { mountPath: http.mountPath, handle, guard, check };
}

/**
 * The guard's verdict as core hands it over: for a cached key, before `http.guard` returns
 * (`result` is set, and no promise is made); otherwise later, through the promise
 * `later()` makes. One object per request, no closures.
 */
class Outcome implements GuardOutcome {
  result: GuardResult | undefined = undefined;
  private failure: { error: unknown } | undefined = undefined;
  private resolve: ((result: GuardResult) => void) | undefined = undefined;
  private reject: ((error: unknown) => void) | undefined = undefined;

  admit(key: AuthenticatedKey, headers: Record<string, string> | undefined): void {
    this.decided({ ok: true, key, headers });
  }

  refuse(response: HttpResponse): void {
    this.decided({ ok: false, response: toResponse(response) });
  }

  fail(error: unknown): void {
    if (this.reject) this.reject(error);
    else this.failure = { error };
  }

  /** The verdict still to come, or a failure that came before this was asked for. */
  later(): Promise<GuardResult> {
    if (this.failure) return Promise.reject(this.failure.error);
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  private decided(result: GuardResult): void {
    if (this.resolve) this.resolve(result);
    else this.result = result;
  }
}

/** Adds the guard's rate-limit header fields (if any) to the host's answer. */
export function withLimitHeaders(
  response: Response,
  verdict: { headers?: Record<string, string> | undefined },
): Response {
  if (verdict.headers) {
    for (const [name, value] of Object.entries(verdict.headers)) {
      response.headers.set(name, value);
    }
  }
  return response;
}

/** Core's answer as a `Response`, headers and body as they are: every adapter sends the
 * same bytes. */
export function toResponse(response: HttpResponse): Response {
  return new Response(response.body, { status: response.status, headers: response.headers });
}

function headersOf(request: Request): HttpRequest['headers'] {
  const record: HttpRequest['headers'] = {};
  // Names come lower-cased; repeated headers come joined with ", ", as Node joins them.
  for (const [name, value] of request.headers) record[name] = value;
  // A Request built in code (a runtime that hands none, a test) may carry no Host: its URL
  // names the origin it was sent to, which the same-origin check of session writes reads.
  if (record.host === undefined) {
    try {
      record.host = new URL(request.url).host;
    } catch {
      // Not an absolute URL: no Host, so a session write gets no same-origin pass by it.
    }
  }
  return record;
}

const noBody: AsyncIterable<Uint8Array> = {
  async *[Symbol.asyncIterator]() {},
};
