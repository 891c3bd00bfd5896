import {
  type AuthenticatedKey,
  errorCodes,
  type GuardOutcome,
  type HttpHandler,
  type HttpResponse,
} from '@keyward/core';
import type {
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onRequestHookHandler,
} from 'fastify';

// The guard reads headers only: any handler will do, whatever its `authorize` takes.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Http = HttpHandler<any>;

export function send(reply: FastifyReply, response: HttpResponse): FastifyReply {
  return reply.code(response.status).headers(response.headers).send(response.body);
}

/**
 * The guard bound to one keyward registration, as an onRequest hook.
 *
 * onRequest runs before Fastify reads any body: an unverified caller never gets its body
 * parsed. A callback hook, not an async one: a cached key continues the request in the
 * same tick, where an async hook would cost a promise and a trip through the microtask
 * queue on every request.
 */
export function guardFor(http: Http): ScopedGuard {
  return (request, reply, done, scopes = [], cost = 1) =>
    http.guard(request.headers, scopes, new FastifyOutcome(request, reply, done), cost);
}

/** What the guard's verdict does to a Fastify request. A class, so each request costs one
 * small object rather than an object and three closures. */
class FastifyOutcome implements GuardOutcome {
  constructor(
    private readonly request: FastifyRequest,
    private readonly reply: FastifyReply,
    private readonly done: HookHandlerDoneFunction,
  ) {}

  admit(key: AuthenticatedKey, headers: Record<string, string> | undefined): void {
    this.request.apiKey = key;
    if (headers) this.reply.headers(headers);
    this.done();
  }

  /** Answering without calling done() ends the request here. */
  refuse(response: HttpResponse): void {
    send(this.reply, response);
  }

  /** Whatever threw (a host's onError, the reply), the request gets an answer once: from
   * Fastify's error handler if it is still ours, else the error is only logged. */
  fail(error: unknown, admitted: boolean): void {
    if (!admitted && !this.reply.sent) this.done(error as Error);
    else this.request.log.error(error);
  }
}

/** An onRequest hook that also takes the scopes its route needs and what it costs. */
export type ScopedGuard = (
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
  scopes?: readonly string[],
  cost?: number,
) => void;

/** Where each registration leaves its guard on its instance; private, so no other plugin
 * can shadow it in a child scope. */
export const kGuard = Symbol('keyward.guard');

/**
 * The guard as a hook that holds wherever it is declared, before or after the plugin: it
 * finds, at request time, the keyward registered in the route's scope
 * (`request.server.keyward`, which Fastify's encapsulation resolves through the parent
 * scopes). A route whose scope has none fails closed.
 *
 * ```ts
 * app.get('/v1/me', { onRequest: requireApiKey }, handler);
 * ```
 */
export const requireApiKey: onRequestHookHandler = (request, reply, done) => {
  runScopedGuard(request, reply, done, undefined, undefined);
};

/** `requireApiKey` with the scopes a route needs and its cost (`{ config: { apiKey: {
 * scopes, cost } } }`). */
export function runScopedGuard(
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
  scopes: readonly string[] | undefined,
  cost: number | undefined,
): void {
  const guard = (request.server as unknown as Record<symbol, ScopedGuard | undefined>)[kGuard];
  if (guard === undefined) {
    failClosed(request.routeOptions.url, reply);
    return;
  }
  guard.call(request.server, request, reply, done, scopes, cost);
}

/** A route asks for a key where no keyward can check one: never serve it. The client gets
 * the shared 500 envelope; the host's log says what is wrong. */
function failClosed(url: string | undefined, reply: FastifyReply): void {
  reply.log.error(
    `keyward: route ${url ?? '(unknown)'} requires an API key, but no keyward plugin is ` +
      'registered in its scope; register keyward on the root instance or a parent of this route.',
  );
  const { status, message } = errorCodes.internal_error;
  reply.code(status).send({ success: false, error: { code: 'internal_error', message } });
}
