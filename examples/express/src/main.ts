import type { AddressInfo } from 'node:net';
import { main } from '@keyward/example-support';
import { keyward } from '@keyward/express';
import express from 'express';

main({
  framework: 'Express',
  async listen(service, config) {
    const app = express();
    app.disable('x-powered-by');
    const auth = keyward({ service, leaks: config.leaks });
    app.use(auth.router);

    // The host's own route, behind keyward's guard.
    app.get('/v1/hello', auth.requireApiKey(), (req, res) => {
      res.json({
        success: true,
        data: { message: `Hello, ${req.apiKey?.ownerId}!`, apiKey: req.apiKey },
      });
    });
    app.get('/health', (_req, res) => {
      res.json({ ok: true });
    });

    const server = app.listen(config.port, config.host);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    return {
      port: (server.address() as AddressInfo).port,
      server,
      close: () =>
        new Promise<void>((resolve, reject) => {
          server.close((error) => (error ? reject(error) : resolve()));
        }),
    };
  },
});
