import type { AddressInfo } from 'node:net';
import { keyward as expressKeyward } from '@keyward/express';
import { keyward as fastifyKeyward, keywardFrameworkErrors } from '@keyward/fastify';
import type { RunningServer, ServerSetup } from '@keyward/testing';
import express from 'express';
import Fastify from 'fastify';

/** The host apps the contract suite drives: keyward mounted, a guarded route and one that
 * needs scopes. */
type HostSetup = Pick<ServerSetup, 'service' | 'guardedPath'> & Partial<ServerSetup>;

export const startServer = {
  async express({
    service,
    guardedPath,
    scopedPath = '/test/orders',
    scopes = ['orders:write'],
  }: HostSetup): Promise<RunningServer> {
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
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  },

  async fastify({
    service,
    guardedPath,
    scopedPath = '/test/orders',
    scopes = ['orders:write'],
  }: HostSetup): Promise<RunningServer> {
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
};
