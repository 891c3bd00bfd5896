// The HTTP contract suite of the installed @keyward/testing, against the installed Express,
// Fastify and Hono adapters, over real HTTP on loopback.
// Run by scripts/consumer-test.mjs in a scratch app outside the workspace.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { keyward as expressKeyward } from '@keyward/express';
import { keyward as fastifyKeyward, keywardFrameworkErrors } from '@keyward/fastify';
import { keyward as honoKeyward } from '@keyward/hono';
import { describeHttpContract } from '@keyward/testing';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';

describeHttpContract('express (installed)', {
  async startServer({ service, guardedPath, scopedPath, scopes }) {
    const app = express();
    const auth = expressKeyward({ service });
    app.use(auth.router);
    app.get(guardedPath, auth.requireApiKey(), (req, res) => {
      res.json({ apiKey: req.apiKey });
    });
    app.get(scopedPath, auth.requireApiKey({ scopes }), (req, res) => {
      res.json({ apiKey: req.apiKey });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  },
});

describeHttpContract('fastify (installed)', {
  async startServer({ service, guardedPath, scopedPath, scopes }) {
    const app = Fastify({ frameworkErrors: keywardFrameworkErrors });
    await app.register(fastifyKeyward, { service });
    app.get(guardedPath, { config: { apiKey: true } }, async (request) => ({
      apiKey: request.apiKey,
    }));
    app.get(scopedPath, { config: { apiKey: { scopes } } }, async (request) => ({
      apiKey: request.apiKey,
    }));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url, close: () => app.close() };
  },
});

describeHttpContract('hono (installed)', {
  async startServer({ service, guardedPath, scopedPath, scopes }) {
    const app = new Hono();
    const auth = honoKeyward({ service });
    app.use(auth.routes);
    app.get(guardedPath, auth.requireApiKey(), (c) => c.json({ apiKey: c.get('apiKey') }));
    app.get(scopedPath, auth.requireApiKey({ scopes }), (c) => c.json({ apiKey: c.get('apiKey') }));
    const server = serve({
      fetch: app.fetch,
      port: 0,
      hostname: '127.0.0.1',
      autoCleanupIncoming: false,
    }) as Server;
    await new Promise<void>((resolve) => server.once('listening', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  },
});
