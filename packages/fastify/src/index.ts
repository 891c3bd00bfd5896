import {
  type AuthenticatedKey,
  createHttpHandler,
  type HttpHandler,
  type HttpOptions,
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
import { guardConfiguredRoutesOf } from './configured-routes.js';
import { guardFor, kGuard, requireApiKey, send } from './guard.js';

export { requireApiKey };

declare module 'fastify' {
  interface FastifyRequest {
    /** The key that authenticated this request, set by keyward's guard; `null` on routes
     * without the guard. */
    apiKey: AuthenticatedKey | null;
  }
  interface FastifyInstance {
    /**
     * keyward's guard as an onRequest hook: `{ onRequest: fastify.requireApiKey }`. It
     * exists only once the plugin has loaded (after `await app.register(keyward, …)`);
     * read earlier it is `undefined`, and Fastify takes `onRequest: undefined` as no hook
     * at all. Where that order is not certain, use `{ config: { apiKey: true } }` or the
     * exported `requireApiKey`, which hold in any order.
     */
    requireApiKey: onRequestHookHandler;
    /** keyward's HTTP layer, for `keywardFrameworkErrors`. */
    keyward: HttpHandler<FastifyRequest>;
  }
  interface FastifyContextConfig {
    /** Guard this route with keyward: `{ config: { apiKey: true } }`, or, for a key that
     * must hold every one of some scopes, `{ config: { apiKey: { scopes: ['orders:write'] } } }`
     * (403 `insufficient_scope` otherwise). `cost` is what one request spends of the key's
     * rate limit and credits: `{ config: { apiKey: { cost: 5 } } }`. @default 1 */
    apiKey?: boolean | { scopes?: readonly string[]; cost?: number };
  }
}

/** `authorize(request)` gets the `FastifyRequest`, with what the host's plugins decorated
 * it with (`request.session`, `request.cookies`). */
export interface KeywardFastifyOptions extends HttpOptions<FastifyRequest> {
  /** The key service (from `createKeyService`) the routes and the guard use. */
  service: KeyService;
  /**
   * Let the plugin own the service: `app.close()` then closes it (`service.close()`,
   * which writes the pending lastUsedAt values), after the server has stopped. Leave it
   * off when the service outlives the app or is shared between apps.
   * @default false
   */
  closeService?: boolean;
}

async function keywardPlugin(fastify: FastifyInstance, options: KeywardFastifyOptions) {
  const http = createHttpHandler<FastifyRequest>(options.service, options);
  const guard = guardFor(http);
  fastify.decorateRequest('apiKey', null);
  fastify.decorate('requireApiKey', guard as onRequestHookHandler);
  fastify.decorate('keyward', http);
  fastify.decorate(kGuard, guard);
  guardConfiguredRoutesOf(fastify);
  if (options.closeService) fastify.addHook('onClose', () => options.service.close());

  // The management routes live in their own context: core reads the raw body itself (after
  // the key check, with its own media type, size and JSON rules), so Fastify's parsers are
  // replaced by one that leaves the stream untouched.
  await fastify.register(async (api) => {
    api.removeAllContentTypeParsers();
    api.addContentTypeParser('*', (_request, _payload, done) => done(null));
    // Fastify judges the Content-Type header before any parser or handler runs (a malformed
    // one, or none on QUERY), and would answer that before the key check. Those judgements
    // are core's, in the order of docs/design.md: hand such requests, body unread, back to it.
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
  http: HttpHandler<FastifyRequest>,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const response = await http.handle(
    {
      method: request.method,
      // The whole target: core reads the query (`?cascade=true`) and ignores a fragment.
      path: request.url,
      headers: request.headers,
      // The stream itself, unread (the parser above leaves it): the leak alert route checks
      // a signature over its raw bytes.
      body: request.raw,
      // request.ip follows Fastify's `trustProxy` option.
      clientAddress: request.ip,
    },
    request,
  );
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
