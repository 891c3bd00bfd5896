import {
  type AuthenticatedKey,
  createHttpHandler,
  type GuardOutcome,
  guardCost,
  type HttpOptions,
  type HttpResponse,
  type KeyService,
} from '@keyward/core';
import express, {
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
  type Router,
} from 'express';

declare global {
  namespace Express {
    interface Request {
      /** The key that authenticated this request, set by keyward's guard. */
      apiKey?: AuthenticatedKey;
    }
  }
}

/**
 * `authorize(req)` gets the Express `Request`, after the host's own middleware (a session,
 * a cookie parser) has run on it: mount keyward's router after those.
 */
export interface KeywardExpressOptions extends HttpOptions<Request> {
  /** The key service (from `createKeyService`) the routes and the guard use. */
  service: KeyService;
}

export interface KeywardExpress {
  /** Serves the management API under `mountPath`; mount it with `app.use(router)`,
   * before any body parser (keyward reads the body itself, and only once the key is
   * verified). */
  router: Router;
  /** Guard for the host's own routes: sets `req.apiKey`, or answers 401/403/429/503 in the
   * shared error envelope. With `scopes`, the key must hold every one of them (`*` holds
   * all); without, any valid key will do. */
  requireApiKey(options?: GuardOptions): RequestHandler;
}

export interface GuardOptions {
  /** Scopes the key must hold, all of them. @default [] */
  scopes?: readonly string[];
  /** Units of the key's rate limit and credits one request to this route spends. @default 1 */
  cost?: number;
}

/**
 * keyward for Express 5.
 *
 * ```ts
 * const auth = keyward({ service });
 * app.use(auth.router);
 * app.get('/v1/me', auth.requireApiKey(), (req, res) => res.json(req.apiKey));
 * ```
 */
export function keyward(options: KeywardExpressOptions): KeywardExpress {
  const http = createHttpHandler<Request>(options.service, options);
  const router = express.Router();

  router.use((req, res, next) => {
    // req.url is relative to wherever the host mounted this router; core reads its query.
    if (!http.owns(req.url)) return next();
    http
      .handle(
        {
          method: req.method,
          path: req.url,
          headers: req.headers,
          // The stream itself, unread: the leak alert route checks a signature over its raw
          // bytes, which a body parser mounted before keyward would have consumed.
          body: req,
          // req.ip follows the app's `trust proxy` setting.
          clientAddress: req.ip ?? req.socket.remoteAddress,
        },
        req,
      )
      .then((response) => send(res, response), next);
  });

  const guard =
    (scopes: readonly string[], cost: number): RequestHandler =>
    (req, res, next) =>
      http.guard(req.headers, scopes, new ExpressOutcome(req, res, next), cost);
  const anyKey = guard([], 1);

  return {
    router,
    requireApiKey: (options = {}) => {
      const scopes = [...(options.scopes ?? [])];
      const cost = guardCost(options.cost);
      return scopes.length === 0 && cost === 1 ? anyKey : guard(scopes, cost);
    },
  };
}

/** What the guard's verdict does to an Express request. A class, so each request costs one
 * small object rather than an object and three closures. */
class ExpressOutcome implements GuardOutcome {
  constructor(
    private readonly req: Request,
    private readonly res: Response,
    private readonly next: NextFunction,
  ) {}

  admit(key: AuthenticatedKey, headers: Record<string, string> | undefined): void {
    this.req.apiKey = key;
    if (headers) for (const name in headers) this.res.setHeader(name, headers[name] as string);
    this.next();
  }

  refuse(response: HttpResponse): void {
    send(this.res, response);
  }

  fail(error: unknown): void {
    this.next(error);
  }
}

/** Writes core's response as is, so Express sends the same bytes as every adapter. */
function send(res: Response, response: HttpResponse): void {
  res.writeHead(response.status, response.headers);
  res.end(response.body);
}
