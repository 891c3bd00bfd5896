import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import {
  badAccountMessage,
  DASHBOARD_PATH,
  loginPage,
  main,
  readAccount,
  SESSION_COOKIE,
} from '@keyward/example-support';
import { keyward } from '@keyward/express';
import express from 'express';
import session from 'express-session';

declare module 'express-session' {
  interface SessionData {
    /** The signed-in account. */
    account: string;
  }
}

main({
  framework: 'Express',
  async listen(service, config) {
    const app = express();
    app.disable('x-powered-by');

    // The host's own sign-in (a stand-in for a real one): express-session, on the routes
    // that use it only, so the API routes behind keys never pay for it.
    const sessions = session({
      name: SESSION_COOKIE,
      secret: process.env.SESSION_SECRET ?? randomBytes(32).toString('hex'),
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax', secure: 'auto' },
    });
    app.use(['/login', '/logout', '/v1/api-keys'], sessions);

    // keyward: keys manage keys, and so does the signed-in user, on the dashboard page.
    const auth = keyward({
      service,
      leaks: config.leaks,
      authorize: (req) => (req.session?.account ? { ownerId: req.session.account } : null),
      dashboard: true,
    });
    app.use(auth.router);

    app.get('/login', (_req, res) => {
      res.type('html').send(loginPage());
    });
    app.post('/login', express.urlencoded({ extended: false, limit: '1kb' }), (req, res, next) => {
      const account = readAccount(req.body?.account);
      if (!account) {
        res.status(400).type('html').send(loginPage(badAccountMessage));
        return;
      }
      // A new session id on sign-in, so one planted before it is worth nothing.
      req.session.regenerate((error) => {
        if (error) return next(error);
        req.session.account = account;
        res.redirect(303, DASHBOARD_PATH);
      });
    });
    app.post('/logout', (req, res, next) => {
      req.session.destroy((error) => {
        if (error) return next(error);
        res.clearCookie(SESSION_COOKIE).redirect(303, '/login');
      });
    });

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
