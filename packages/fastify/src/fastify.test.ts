import { describeHttpContract } from '@keyward/testing';
import Fastify from 'fastify';
import { keyward, keywardFrameworkErrors } from './index.js';

describeHttpContract('fastify', {
  async startServer({ service, guardedPath }) {
    const app = Fastify({ frameworkErrors: keywardFrameworkErrors });
    await app.register(keyward, { service });
    app.get(guardedPath, { config: { apiKey: true } }, async (request) => ({
      apiKey: request.apiKey,
    }));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url, close: () => app.close() };
  },
});
