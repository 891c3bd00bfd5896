import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import {
  badAccountMessage,
  DASHBOARD_PATH,
  loginPage,
  main,
  readAccount,
  SESSION_COOKIE,
} from '@keyward/example-support';
import { keyward } from '@keyward/hono';
import { Hono } from 'hono';
import { deleteCookie, getSignedCookie, setSignedCookie } from 'hono/cookie';

main({
  framework: 'Hono',
  async listen(service, config) {
    const app = new Hono();
    // The host's own sign-in (a stand-in for a real one): the account in a signed,
    // HttpOnly cookie through hono/cookie.
    const secret = process.env.SESSION_SECRET ?? randomBytes(32).toString('hex');

    // keyward: keys manage keys, and so does the signed-in user, on the dashboard page.
    const auth = keyward({
      service,
      leaks: config.leaks,
      authorize: async (c) => {
        const account = await getSignedCookie(c, secret, SESSION_COOKIE);
        return account ? { ownerId: account } : null;
      },
      dashboard: true,
    });
    app.use(auth.routes);

    app.get('/login', (c) => c.html(loginPage()));
    app.post('/login', async (c) => {
      const form = await c.req.parseBody();
      const account = readAccount(form.account);
      if (!account) return c.html(loginPage(badAccountMessage), 400);
      await setSignedCookie(c, SESSION_COOKIE, account, secret, {
        path: '/',
        httpOnly: true,
        sameSite: 'Lax',
        secure: new URL(c.req.url).protocol === 'https:',
      });
      return c.redirect(DASHBOARD_PATH, 303);
    });
    app.post('/logout', (c) => {
      deleteCookie(c, SESSION_COOKIE, { path: '/' });
      return c.redirect('/login', 303);
    });

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
