import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CHECKSUM_LENGTH } from '@keyward/core';
import { sendRequest } from '@keyward/testing';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningExample, startExample } from './support/example-process.js';

// The dashboard page in real headless Chromium (Debian's, driven by playwright-core), on the
// Express and Fastify examples: sign in, create (shown once, copied, gone after dismissal
// and reload), rename, roll, revoke with cascade, the same keys over plain HTTP, a
// keyboard-only create, a key with a rate limit and credits, a leaked key's warning and its
// roll, axe in light and dark, no console error, failed request or CSP violation. One browser for the whole file: CPU is scarce. What runs in the page is
// passed as source text: this file is typechecked without the DOM library.
// KEYWARD_SCREENSHOTS=1 also writes docs/dashboard-{light,dark,leaked}.png.

const CHROMIUM = '/usr/bin/chromium';
const axeSource = readFileSync(
  createRequire(import.meta.url).resolve('axe-core/axe.min.js'),
  'utf8',
);
const docs = fileURLToPath(new URL('../docs/', import.meta.url));

let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

/** What the page did wrong: console errors, uncaught errors, failed or refused requests, CSP
 * violations (reported by the browser to the page itself). */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      problems.push(`console ${message.type()}: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) =>
    problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`),
  );
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
  return problems;
}

async function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate<string[]>('window.__csp ?? []');
}

/** axe-core's serious and critical findings on the page as it is. */
async function axe(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(axeSource);
  const results = (await page.evaluate('axe.run()')) as {
    violations: Array<{ id: string; impact: string; nodes: Array<{ target: unknown }> }>;
  };
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${JSON.stringify(v.nodes.map((n) => n.target))}`);
}

const http = (app: RunningExample, rawKey: string, path = '/v1/hello') =>
  sendRequest(app.url, { path, headers: { 'X-API-Key': rawKey } });

describe.each(['express', 'fastify'] as const)(
  'dashboard in Chromium on examples/%s',
  (framework) => {
    let app: RunningExample;
    let context: BrowserContext;
    let page: Page;
    let problems: string[];
    const account = `browser-${framework}-${Date.now().toString(36)}`;

    beforeAll(async () => {
      app = await startExample(framework);
      context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: app.url });
      await context.addInitScript(`
        window.__csp = [];
        document.addEventListener('securitypolicyviolation', (event) =>
          window.__csp.push(event.violatedDirective + ' ' + event.blockedURI));
      `);
      page = await context.newPage();
      problems = watch(page);
    }, 60_000);

    afterAll(async () => {
      await context?.close();
      if (app) expect(await app.stop()).toBe(0);
    });

    it('signs in through /login and lands on the dashboard, empty for a new account', async () => {
      await page.goto(`${app.url}/login`);
      await page.getByLabel('Account name').fill(account);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${app.url}/v1/api-keys/dashboard`);
      await expect.poll(() => page.locator('#keys-status').textContent()).toBe('No keys yet.');
      expect(await page.locator('.account strong').textContent()).toBe(account);
    });

    let rawKey = '';

    it('creates a key: shown once, the copy button puts it on the clipboard, gone after dismissal and reload; it works over HTTP', async () => {
      await page.getByLabel('Name').fill('CI server');
      await page.getByLabel('Expires').selectOption({ label: 'In 30 days' });
      await page.getByRole('button', { name: 'Create key' }).click();
      const shown = page.locator('#raw-key');
      await shown.waitFor();
      rawKey = (await shown.textContent()) ?? '';
      expect(rawKey).toMatch(/^\S{30,}$/);
      await page.getByRole('button', { name: 'Copy key' }).click();
      await expect.poll(() => page.locator('#copy-status').textContent()).toMatch(/Copied/);
      expect(await page.evaluate<string>('navigator.clipboard.readText()')).toBe(rawKey);
      // The list shows the key masked, with its expiry.
      const row = page.locator('tbody tr', { hasText: 'CI server' });
      await expect.poll(() => row.count()).toBe(1);
      expect(await row.textContent()).toMatch(/in 30 days|in 1 month/);
      expect(await row.textContent()).not.toContain(rawKey);

      expect((await http(app, rawKey)).status).toBe(200);

      await page.getByRole('button', { name: /hide the key/ }).click();
      expect(await page.locator('#raw-key').count()).toBe(0);
      expect(await page.content()).not.toContain(rawKey);
      await page.reload();
      await expect.poll(() => page.locator('tbody tr').count()).toBe(1);
      expect(await page.content()).not.toContain(rawKey);
    });

    it('renames the key inline', async () => {
      await page.getByRole('button', { name: 'Rename CI server' }).click();
      const input = page.getByLabel('New name for CI server');
      await input.fill('Build farm');
      await input.press('Enter');
      await expect.poll(() => page.locator('tbody th .name').textContent()).toBe('Build farm');
      // Focus returns to the row's Rename button.
      expect(
        await page.evaluate<string>("document.activeElement?.getAttribute('aria-label')"),
      ).toBe('Rename Build farm');
    });

    let rolledKey = '';

    it('rolls it with no grace: a new key shown once; the old one stops working, the new one works', async () => {
      await page.getByRole('button', { name: 'Roll Build farm' }).click();
      await page.getByLabel('Grace period').selectOption('0');
      await page.getByRole('button', { name: 'Roll key' }).click();
      const shown = page.locator('#raw-key');
      await shown.waitFor();
      rolledKey = (await shown.textContent()) ?? '';
      expect(rolledKey).not.toBe(rawKey);
      await page.getByRole('button', { name: /hide the key/ }).click();
      expect((await http(app, rolledKey)).status).toBe(200);
      await expect.poll(async () => (await http(app, rawKey)).status).toBe(401);
    });

    it('revokes with cascade after a confirmation: the key and the key it created stop working', async () => {
      const child = await sendRequest(app.url, {
        method: 'POST',
        path: '/v1/api-keys',
        headers: { 'X-API-Key': rolledKey },
        body: { name: 'made by the build farm' },
      });
      expect(child.status).toBe(201);
      const childKey = (child.json as { data: { rawKey: string } }).data.rawKey;
      await page.reload();
      // The old key, expired by the roll, is still listed (as expired) beside its successor.
      const rows = page.locator('tbody tr');
      await expect.poll(() => rows.count()).toBe(3);
      const expired = rows.filter({ hasText: 'Expired' });
      expect(await expired.count()).toBe(1);
      // No Roll for it: the API answers 404 to rolling an expired key.
      const buttons = expired.locator('button[data-action]');
      const actions: (string | null)[] = [];
      for (let i = 0; i < (await buttons.count()); i++) {
        actions.push(await buttons.nth(i).getAttribute('data-action'));
      }
      expect(actions).toEqual(['rename', 'revoke']);
      const successor = rows.filter({ hasText: `…${rolledKey.slice(-CHECKSUM_LENGTH)}` });
      expect(await successor.count()).toBe(1);

      // Cancelling changes nothing.
      await successor.getByRole('button', { name: 'Revoke Build farm' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
      expect((await http(app, rolledKey)).status).toBe(200);

      await successor.getByRole('button', { name: 'Revoke Build farm' }).click();
      await page.getByLabel('Also revoke every key it created').check();
      await page.getByRole('button', { name: 'Revoke key' }).click();
      await expect
        .poll(() => page.locator('#keys-status').textContent())
        .toMatch(/Revoked Build farm and 1 more/);
      expect(await rows.count()).toBe(1);
      expect(await rows.filter({ hasText: 'made by the build farm' }).count()).toBe(0);
      await expect.poll(async () => (await http(app, rolledKey)).status).toBe(401);
      expect((await http(app, childKey)).status).toBe(401);
    });

    it('creates a key with the keyboard alone, the one-time key announced in a live region', async () => {
      await page.reload();
      await page.locator('#keys-status').filter({ hasText: '1 key.' }).waitFor();
      const focused = () => page.evaluate<string>("document.activeElement?.id ?? ''");
      await page.keyboard.press('Tab');
      expect(await focused()).toBe('create-name');
      await page.keyboard.type('Keyboard key');
      await page.keyboard.press('Tab');
      expect(await focused()).toBe('create-expiry');
      await page.keyboard.press('Tab');
      expect(await focused()).toBe('create-scopes');
      await page.keyboard.type('api_keys:read');
      // The optional limits wait, folded, between the fields and the button.
      await page.keyboard.press('Tab');
      expect(await focused()).toBe('create-limits');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Enter');
      await page.locator('#raw-key').waitFor();
      expect(await focused()).toBe('copy-key');
      const live = page.locator('#reveal-region');
      expect(await live.getAttribute('aria-live')).toBe('polite');
      const key = (await live.locator('#raw-key').textContent()) ?? '';
      await page.keyboard.press('Enter');
      expect(await page.evaluate<string>('navigator.clipboard.readText()')).toBe(key);
      await page.keyboard.press('Tab');
      expect(await focused()).toBe('dismiss-key');
      await page.keyboard.press('Enter');
      expect(await page.locator('#raw-key').count()).toBe(0);
      expect(await focused()).toBe('create-name');
      // A read-only key: it lists, it may not create.
      expect((await http(app, key, '/v1/api-keys')).status).toBe(200);
    });

    it('creates a key with a rate limit and credits; reported leaked, it shows a warning, and Roll now replaces it', async () => {
      await page.reload();
      await page.locator('#keys-status').filter({ hasText: '2 keys.' }).waitFor();
      await page.getByLabel('Name', { exact: true }).fill('Exposed key');
      await page.locator('#create-limits').click();
      await page.getByLabel('Requests per window').fill('100');
      await page.getByLabel('Window, in seconds').fill('3600');
      await page.getByLabel('Credits', { exact: true }).fill('500');
      await page.getByLabel('Refill to').fill('1000');
      await page.getByLabel('Refill every').selectOption('month');
      await page.getByRole('button', { name: 'Create key' }).click();
      const shown = page.locator('#raw-key');
      await shown.waitFor();
      const exposed = (await shown.textContent()) ?? '';
      await page.getByRole('button', { name: /hide the key/ }).click();
      const row = page.locator('tbody tr', { hasText: 'Exposed key' });
      await expect.poll(() => row.count()).toBe(1);
      expect(await row.textContent()).toContain('100 per hour');
      expect(await row.textContent()).toMatch(/500 left, refilled to 1\D?000 each month/);
      // The limit holds on the host's routes.
      const used = await http(app, exposed);
      expect(used.status).toBe(200);
      expect(used.headers['ratelimit-policy']).toBe('"window";q=100;w=3600');

      // Reported on the public route: checked after the answer, so the page is reloaded
      // until the mark shows.
      const reported = await sendRequest(app.url, {
        method: 'POST',
        path: '/v1/api-keys/report-leak',
        body: { keys: [exposed] },
      });
      expect(reported.status).toBe(202);
      const warning = page.locator('.leak-warning');
      for (let i = 0; i < 50 && (await warning.count()) === 0; i++) {
        await sleep(100);
        await page.reload();
        await page.locator('#keys-status').filter({ hasText: '3 keys.' }).waitFor();
      }
      expect(await warning.count()).toBe(1);
      expect(await warning.getByRole('heading').textContent()).toBe('Leaked key: Exposed key');
      const said = (await warning.textContent()) ?? '';
      expect(said).toMatch(/Reported leaked by a public report on \w+ \d+, \d{4}/);
      expect(said).toMatch(/stops working in (60 minutes|1 hour)/);
      expect(await row.locator('.badge').textContent()).toBe('Leaked');
      // It still works on the host's routes until then, but manages nothing.
      expect((await http(app, exposed)).status).toBe(200);
      expect((await http(app, exposed, '/v1/api-keys')).status).toBe(403);

      for (const colorScheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme });
        expect(await axe(page)).toEqual([]);
        if (process.env.KEYWARD_SCREENSHOTS === '1' && framework === 'express') {
          if (colorScheme === 'light') {
            await page.screenshot({ path: `${docs}dashboard-leaked.png`, fullPage: true });
          }
        }
      }
      await page.emulateMedia({ colorScheme: 'light' });

      await page.getByRole('button', { name: 'Roll now, Exposed key' }).click();
      expect(await page.locator('#roll-leak-note').textContent()).toMatch(
        /reported leaked: it stops working in (60 minutes|1 hour) at the latest/,
      );
      await page.getByLabel('Grace period').selectOption('0');
      await page.getByRole('dialog').getByRole('button', { name: 'Roll key', exact: true }).click();
      await shown.waitFor();
      const successor = (await shown.textContent()) ?? '';
      expect(successor).not.toBe(exposed);
      expect(await page.evaluate<string>("document.activeElement?.id ?? ''")).toBe('copy-key');
      await page.getByRole('button', { name: /hide the key/ }).click();
      // The leaked key stopped at once (no grace): no warning left; its successor works,
      // with the same limit.
      expect(await warning.count()).toBe(0);
      await expect.poll(async () => (await http(app, exposed)).status).toBe(401);
      const next = await http(app, successor);
      expect(next.status).toBe(200);
      expect(next.headers['ratelimit-policy']).toBe('"window";q=100;w=3600');
      const rows = page.locator('tbody tr', { hasText: 'Exposed key' });
      expect(await rows.count()).toBe(2);
      expect(await rows.filter({ hasText: 'Expired' }).locator('.badge').count()).toBe(1);
      expect(await rows.filter({ hasNotText: 'Expired' }).textContent()).toContain('100 per hour');
    });

    it('has no serious or critical axe violation in light and dark, and fits 360 px', async () => {
      await page.reload();
      await expect.poll(() => page.locator('tbody tr').count()).toBe(4);
      for (const colorScheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme });
        expect(await axe(page)).toEqual([]);
        if (process.env.KEYWARD_SCREENSHOTS === '1' && framework === 'express') {
          await page.screenshot({ path: `${docs}dashboard-${colorScheme}.png`, fullPage: true });
        }
      }
      await page.setViewportSize({ width: 360, height: 740 });
      expect(
        await page.evaluate<number>('document.documentElement.scrollWidth'),
      ).toBeLessThanOrEqual(360);
      expect(await axe(page)).toEqual([]);
    });

    it('saw no console error, failed request or CSP violation', async () => {
      expect(await cspViolations(page)).toEqual([]);
      expect(problems).toEqual([]);
      // And the watch works: an inline script is refused by the page's CSP, and seen.
      await page.addScriptTag({ content: 'window.__inline = true;' }).catch(() => {});
      expect(await page.evaluate<boolean>('window.__inline === true')).toBe(false);
      expect((await cspViolations(page)).join()).toMatch(/script-src/);
    });
  },
);
