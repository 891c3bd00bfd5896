import { randomBytes } from 'node:crypto';
import cookie from '@fastify/cookie';
import {
  badAccountMessage,
  DASHBOARD_PATH,
  loginPage,
  main,
  readAccount,
  SESSION_COOKIE,
} from '@keyward/example-support';
import { keyward, keywardFrameworkErrors } from '@keyward/fastify';
import Fastify, { type FastifyRequest } from 'fastify';

main({
  framework: 'Fastify',
  async listen(service, config) {
    const app = Fastify({ frameworkErrors: keywardFrameworkErrors });

    // The host's own sign-in (a stand-in for a real one): the account in a signed,
    // HttpOnly cookie through @fastify/cookie.
    await app.register(cookie, {
      secret: process.env.SESSION_SECRET ?? randomBytes(32).toString('hex'),
    });
    const signedInAccount = (request: FastifyRequest): string | null => {
      const value = request.cookies[SESSION_COOKIE];
      if (!value) return null;
      const unsigned = request.unsignCookie(value);
      return unsigned.valid ? unsigned.value : null;
    };

    // keyward: keys manage keys, and so does the signed-in user, on the dashboard page.
    await app.register(keyward, {
      service,
      leaks: config.leaks,
      authorize: (request) => {
        const account = signedInAccount(request);
        return account ? { ownerId: account } : null;
      },
      dashboard: true,
    });

    // The login form posts application/x-www-form-urlencoded.
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 1024 },
      (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    app.get('/login', async (_request, reply) => reply.type('text/html').send(loginPage()));
    app.post('/login', async (request, reply) => {
      const account = readAccount((request.body as Record<string, unknown> | null)?.account);
      if (!account) return reply.code(400).type('text/html').send(loginPage(badAccountMessage));
      return reply
        .setCookie(SESSION_COOKIE, account, {
          path: '/',
          httpOnly: true,
          sameSite: 'lax',
          secure: 'auto',
          signed: true,
        })
        .redirect(DASHBOARD_PATH, 303);
    });
    app.post('/logout', async (_request, reply) =>
      reply.clearCookie(SESSION_COOKIE, { path: '/' }).redirect('/login', 303),
    );

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
