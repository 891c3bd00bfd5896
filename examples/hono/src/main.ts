import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { main } from '@keyward/example-support';
import { keyward } from '@keyward/hono';
import { Hono } from 'hono';

main({
  framework: 'Hono',
  async listen(service, config) {
    const app = new Hono();
    const auth = keyward({ service, leaks: config.leaks });
    app.use(auth.routes);

    // The host's own route, behind keyward's guard.
    app.get('/v1/hello', auth.requireApiKey(), (c) => {
      const apiKey = c.get('apiKey');
      return c.json({ success: true, data: { message: `Hello, ${apiKey.ownerId}!`, apiKey } });
    });
    app.get('/health', (c) => c.json({ ok: true }));

    const server = serve({
      fetch: app.fetch,
      port: config.port,
      hostname: config.host,
      // Node discards a body keyward left unread (no key, say), as under Express; node-server's
      // own drain would cut a kept-alive connection after 500 ms (see @keyward/hono's README).
      autoCleanupIncoming: false,
    }) as Server;
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
