import type { AddressInfo } from 'node:net';
import { describeHttpContract } from '@keyward/testing';
import express from 'express';
import { keyward } from './index.js';

describeHttpContract('express', {
  async startServer({ service, guardedPath, scopedPath, scopes }) {
    const app = express();
    const auth = keyward({ service });
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
