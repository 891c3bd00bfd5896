import {
  type AuthenticatedKey,
  createHttpHandler,
  type HttpOptions,
  type HttpResponse,
  type KeyService,
} from '@keyward/core';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyRequest {
    /** The key that authenticated this request, set by keyward's guard; `null` on routes
     * without the guard. */
    apiKey: AuthenticatedKey | null;
  }
  interface FastifyInstance {
    /** keyward's guard as an onRequest hook: `{ onRequest: fastify.requireApiKey }`. */
    requireApiKey: onRequestHookHandler;
    /** keyward's HTTP layer, for `keywardFrameworkErrors`. */
    keyward: ReturnType<typeof createHttpHandler>;
  }
  interface FastifyContextConfig {
    /** Guard this route with keyward: `{ config: { apiKey: true } }`. */
    apiKey?: boolean;
  }
}

export interface KeywardFastifyOptions extends HttpOptions {
  /** The key service (from `createKeyService`) the routes and the guard use. */
  service: KeyService;
}

async function keywardPlugin(fastify: FastifyInstance, options: KeywardFastifyOptions) {
  const http = createHttpHandler(options.service, options);

  // onRequest runs before Fastify reads any body: an unverified caller never gets its
  // body parsed. A callback hook, not an async one: a cached key continues the request in
  // the same tick, where an async hook would cost a promise and a trip through the
  // microtask queue on every request.
  const requireApiKey: onRequestHookHandler = (request, reply, done) => {
    const cached = http.authenticateCached(request.headers);
    if (cached) {
      request.apiKey = cached;
      done();
      return;
    }
    let continued = false;
    http
      .authenticate(request.headers)
      .then((result) => {
        if (!result.ok) {
          // Answering without calling done() ends the request here.
          send(reply, http.errorResponse(result.error));
          return;
        }
        request.apiKey = result.key;
        continued = true;
        done();
      })
      .catch((error: Error) => {
        // Whatever threw (a host's onError, the reply), the request gets an answer once: from
        // Fastify's error handler if it is still ours, else the error is only logged.
        if (!continued && !reply.sent) done(error);
        else request.log.error(error);
      });
  };
  fastify.decorateRequest('apiKey', null);
  fastify.decorate('requireApiKey', requireApiKey);
  fastify.decorate('keyward', http);
  fastify.addHook('onRoute', (route) => {
    if (!route.config?.apiKey) return;
    const hooks = route.onRequest ?? [];
    route.onRequest = [requireApiKey, ...(Array.isArray(hooks) ? hooks : [hooks])];
  });

  // The management routes live in their own context: core reads the raw body itself (after
  // the key check, with its own media type, size and JSON rules), so Fastify's parsers are
  // replaced by one that leaves the stream untouched.
  await fastify.register(async (api) => {
    api.removeAllContentTypeParsers();
    api.addContentTypeParser('*', (_request, _payload, done) => done(null));
    // Fastify judges the Content-Type header before any parser or handler runs (a malformed
    // one, or none on QUERY), and would answer that before the key check. Those judgements
    // are core's, in DESIGN.md's order: hand such requests, body unread, back to it.
    api.setErrorHandler((error: FastifyError, request, reply) => {
      if (!fastifyMediaTypeErrors.has(error.code)) throw error;
      return serve(http, request, reply);
    });
    const handler = (request: FastifyRequest, reply: FastifyReply) => serve(http, request, reply);
    api.all(http.mountPath, handler);
    api.all(`${http.mountPath}/*`, handler);
  });
}

const fastifyMediaTypeErrors = new Set([
  'FST_ERR_CTP_INVALID_MEDIA_TYPE',
  'FST_ERR_ROUTE_MISSING_CONTENT_TYPE',
]);

async function serve(
  http: ReturnType<typeof createHttpHandler>,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const response = await http.handle({
    method: request.method,
    path: request.url.split('?', 1)[0] ?? '',
    headers: request.headers,
    body: request.raw,
  });
  return send(reply, response);
}

/**
 * Pass as Fastify's `frameworkErrors` option so that a malformed URL under the mount path
 * (`/v1/api-keys/%ZZ`) gets keyward's answer, as on every adapter, instead of Fastify's
 * own 400, which it sends before any plugin can see the request. Other errors and paths
 * keep Fastify's default answer.
 *
 * ```ts
 * const app = Fastify({ frameworkErrors: keywardFrameworkErrors });
 * ```
 */
export function keywardFrameworkErrors(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const http = request.server.keyward;
  const path = request.url.split('?', 1)[0] ?? '';
  if (http && error.code === 'FST_ERR_BAD_URL' && http.owns(path)) {
    serve(http, request, reply).catch((e: unknown) => reply.send(e));
    return;
  }
  reply.code(error.statusCode ?? 400).send(error);
}

function send(reply: FastifyReply, response: HttpResponse): FastifyReply {
  return reply.code(response.status).headers(response.headers).send(response.body);
}

/**
 * keyward for Fastify 5: the management routes under `mountPath` and a guard for the
 * host's routes.
 *
 * ```ts
 * await app.register(keyward, { service });
 * app.get('/v1/me', { config: { apiKey: true } }, (request) => request.apiKey);
 * ```
 */
export const keyward = fp(keywardPlugin, { fastify: '5.x', name: '@keyward/fastify' });
export default keyward;
