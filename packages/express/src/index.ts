import {
  type AuthenticatedKey,
  createHttpHandler,
  type GuardOutcome,
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
  /** Guard for the host's own routes: sets `req.apiKey`, or answers 401/403/503 in the
   * shared error envelope. With `scopes`, the key must hold every one of them (`*` holds
   * all); without, any valid key will do. */
  requireApiKey(options?: GuardOptions): RequestHandler;
}

export interface GuardOptions {
  /** Scopes the key must hold, all of them. @default [] */
  scopes?: readonly string[];
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
      .handle({ method: req.method, path: req.url, headers: req.headers, body: req }, req)
      .then((response) => send(res, response), next);
  });

  const guard =
    (scopes: readonly string[]): RequestHandler =>
    (req, res, next) =>
      http.guard(req.headers, scopes, new ExpressOutcome(req, res, next));
  const anyKey = guard([]);

  return {
    router,
    requireApiKey: (options = {}) => {
      const scopes = [...(options.scopes ?? [])];
      return scopes.length === 0 ? anyKey : guard(scopes);
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

  admit(key: AuthenticatedKey): void {
    this.req.apiKey = key;
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
