import { sendRequest } from '@keyward/testing';
import { describe, expect, it } from 'vitest';
import { startExample } from './support/example-process.js';

const frameworks = ['express', 'fastify', 'hono'] as const;
const form = { 'Content-Type': 'application/x-www-form-urlencoded' };

describe.each(frameworks)('examples/%s: sign-in for the dashboard', (framework) => {
  it('prints the login URL; /login sets an HttpOnly SameSite=Lax session cookie and 303s to the dashboard; /logout ends it', async () => {
    const app = await startExample(framework);
    try {
      expect(app.output()).toContain(`login: ${app.url}/login`);
      const page = await sendRequest(app.url, { path: '/login' });
      expect(page.status).toBe(200);
      expect(page.text).toMatch(/<form method="post" action="\/login">[\s\S]*name="account"/);

      const refused = await sendRequest(app.url, {
        method: 'POST',
        path: '/login',
        headers: form,
        body: 'account=%3Cscript%3E',
      });
      expect(refused.status).toBe(400);
      expect(refused.headers['set-cookie']).toBeUndefined();

      const signedIn = await sendRequest(app.url, {
        method: 'POST',
        path: '/login',
        headers: form,
        body: 'account=alice',
      });
      expect(signedIn.status).toBe(303);
      expect(signedIn.headers.location).toBe('/v1/api-keys/dashboard');
      const setCookie = String(signedIn.headers['set-cookie']);
      expect(setCookie).toMatch(/^keyward_demo_session=/);
      expect(setCookie).toMatch(/; HttpOnly/i);
      expect(setCookie).toMatch(/; SameSite=Lax/i);
      const cookie = setCookie.split(';', 1)[0] as string;

      const dashboard = await sendRequest(app.url, {
        path: '/v1/api-keys/dashboard',
        headers: { Cookie: cookie },
      });
      expect(dashboard.status).toBe(200);
      expect(dashboard.text).toContain('<strong>alice</strong>');
      // The session manages alice's keys: none yet, a fresh account.
      const list = await sendRequest(app.url, {
        path: '/v1/api-keys',
        headers: { Cookie: cookie },
      });
      expect(list.json).toEqual({ success: true, data: [] });
      // A forged cookie is nobody.
      const forged = await sendRequest(app.url, {
        path: '/v1/api-keys',
        headers: { Cookie: 'keyward_demo_session=alice' },
      });
      expect(forged.status).toBe(401);

      const out = await sendRequest(app.url, {
        method: 'POST',
        path: '/logout',
        headers: { Cookie: cookie },
      });
      expect(out.status).toBe(303);
      expect(out.headers.location).toBe('/login');
      expect(String(out.headers['set-cookie'])).toMatch(/keyward_demo_session=;/);
    } finally {
      expect(await app.stop()).toBe(0);
    }
  }, 60_000);
});
