import { main } from '@keyward/example-support';
import { keyward, keywardFrameworkErrors } from '@keyward/fastify';
import Fastify from 'fastify';

main({
  framework: 'Fastify',
  async listen(service, config) {
    const app = Fastify({ frameworkErrors: keywardFrameworkErrors });
    await app.register(keyward, { service, leaks: config.leaks });

    // The host's own route, behind keyward's guard.
    app.get('/v1/hello', { config: { apiKey: true } }, async (request) => ({
      success: true,
      data: { message: `Hello, ${request.apiKey?.ownerId}!`, apiKey: request.apiKey },
    }));
    app.get('/health', async () => ({ ok: true }));

    await app.listen({ port: config.port, host: config.host });
    const address = app.server.address();
    return {
      port: typeof address === 'object' && address ? address.port : config.port,
      server: app.server,
      close: () => app.close(),
    };
  },
});
