import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { HttpOptions } from '@keyward/core';
import { keyward as expressKeyward } from '@keyward/express';
import { keyward as fastifyKeyward, keywardFrameworkErrors } from '@keyward/fastify';
import { keyward as honoKeyward } from '@keyward/hono';
import type { RunningServer, ServerSetup } from '@keyward/testing';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';

/** The host apps the contract suite drives: keyward mounted, a guarded route and one that
 * needs scopes. */
type HostSetup = Pick<ServerSetup, 'service' | 'guardedPath'> &
  Partial<ServerSetup> & {
    /** keyward's HTTP options (the leak routes, say), given to the adapter as they are. */
    httpOptions?: Omit<HttpOptions, 'authorize'>;
  };

/** A host route every app guards with a cost of `COSTLY_COST` units per request. */
export const COSTLY_PATH = '/test/costly';
export const COSTLY_COST = 5;
/** A guarded host route that answers the server's clock when it ran (`{ at }`, epoch ms):
 * the rate-limit tests place each admitted request in its window by it, not by when the
 * answer reached a loaded client. */
export const TIMED_PATH = '/test/timed';

export const startServer = {
  async express({
    service,
    guardedPath,
    scopedPath = '/test/orders',
    scopes = ['orders:write'],
    httpOptions,
    signIn,
  }: HostSetup): Promise<RunningServer> {
    const app = express();
    const auth = expressKeyward({
      ...httpOptions,
      service,
      ...(signIn && { authorize: (req) => signIn(req.headers.cookie), dashboard: true }),
    });
    app.use(auth.router);
    app.get(guardedPath, auth.requireApiKey(), (req, res) => {
      res.json({ apiKey: req.apiKey });
    });
    app.get(scopedPath, auth.requireApiKey({ scopes }), (req, res) => {
      res.json({ apiKey: req.apiKey });
    });
    app.get(COSTLY_PATH, auth.requireApiKey({ cost: COSTLY_COST }), (req, res) => {
      res.json({ apiKey: req.apiKey });
    });
    app.get(TIMED_PATH, auth.requireApiKey(), (_req, res) => {
      res.json({ at: Date.now() });
    });
    return running(app.listen(0, '127.0.0.1'));
  },

  async fastify({
    service,
    guardedPath,
    scopedPath = '/test/orders',
    scopes = ['orders:write'],
    httpOptions,
    signIn,
  }: HostSetup): Promise<RunningServer> {
    const app = Fastify({ frameworkErrors: keywardFrameworkErrors });
    await app.register(fastifyKeyward, {
      ...httpOptions,
      service,
      ...(signIn && { authorize: (request) => signIn(request.headers.cookie), dashboard: true }),
    });
    app.get(guardedPath, { config: { apiKey: true } }, async (request) => ({
      apiKey: request.apiKey,
    }));
    app.get(scopedPath, { config: { apiKey: { scopes } } }, async (request) => ({
      apiKey: request.apiKey,
    }));
    app.get(COSTLY_PATH, { config: { apiKey: { cost: COSTLY_COST } } }, async (request) => ({
      apiKey: request.apiKey,
    }));
    app.get(TIMED_PATH, { config: { apiKey: true } }, async () => ({ at: Date.now() }));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url, close: () => app.close() };
  },

  async hono({
    service,
    guardedPath,
    scopedPath = '/test/orders',
    scopes = ['orders:write'],
    httpOptions,
    signIn,
  }: HostSetup): Promise<RunningServer> {
    const app = new Hono();
    const auth = honoKeyward({
      ...httpOptions,
      service,
      ...(signIn && { authorize: (c) => signIn(c.req.header('cookie')), dashboard: true }),
    });
    app.use(auth.routes);
    // Hono's c.json names no charset; Express's and Fastify's do: the host routes answer
    // alike, so that the suites comparing adapters compare keyward alone.
    const json = { 'Content-Type': 'application/json; charset=utf-8' };
    app.get(guardedPath, auth.requireApiKey(), (c) =>
      c.json({ apiKey: c.get('apiKey') }, 200, json),
    );
    app.get(scopedPath, auth.requireApiKey({ scopes }), (c) =>
      c.json({ apiKey: c.get('apiKey') }, 200, json),
    );
    app.get(COSTLY_PATH, auth.requireApiKey({ cost: COSTLY_COST }), (c) =>
      c.json({ apiKey: c.get('apiKey') }, 200, json),
    );
    app.get(TIMED_PATH, auth.requireApiKey(), (c) => c.json({ at: Date.now() }, 200, json));
    // node-server's own drain of a body the app left unread (autoCleanupIncoming) destroys
    // the socket if the body's end is not seen within 500 ms, kept-alive and already
    // carrying the next request or not: the fuzz met "socket hang up" there. Off, Node
    // discards the unread body itself, as under Express.
    const server = serve({
      fetch: app.fetch,
      port: 0,
      hostname: '127.0.0.1',
      autoCleanupIncoming: false,
    }) as Server;
    return running(server);
  },
};

/** A node:http server once it listens, as the suites want it: its URL, and a close that
 * cuts kept-alive connections instead of waiting for them. */
async function running(server: Server): Promise<RunningServer> {
  if (!server.listening) await new Promise<void>((resolve) => server.once('listening', resolve));
  // Load tests keep sockets alive across pauses; Node's 5 s default closes an idle one just
  // as a client may send on it (a reset no server bug causes). close() ends them all anyway.
  server.keepAliveTimeout = 65_000;
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
