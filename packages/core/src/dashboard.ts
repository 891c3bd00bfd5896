import { dashboardIcon, dashboardScript, dashboardStyle } from './dashboard-assets.js';
import type { HttpResponse } from './http.js';

// The dashboard page (docs/design.md, "The dashboard page"): the HTML comes from here, the
// script and the style from dashboard/, prebuilt into dashboard-assets.ts under a content
// hash. No inline script or style, so the page runs under `default-src 'self'`.

const CSP = "default-src 'self'; frame-ancestors 'none'";

const pageHeaders = (length: number): Record<string, string> => ({
  'Content-Type': 'text/html; charset=utf-8',
  'Content-Length': String(length),
  'Cache-Control': 'no-store',
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'same-origin',
});

function html(status: number, body: string): HttpResponse {
  return { status, headers: pageHeaders(Buffer.byteLength(body)), body };
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function shell(title: string, main: string, withAssets: boolean): string {
  // Relative links: the page is <mount>/dashboard, its assets <mount>/dashboard/<name>,
  // wherever the host mounted keyward's router.
  const head = `<link rel="icon" href="dashboard/${dashboardIcon.name}" type="image/svg+xml">\n<link rel="stylesheet" href="dashboard/${dashboardStyle.name}">\n`;
  const assets = withAssets
    ? `${head}<script type="module" src="dashboard/${dashboardScript.name}"></script>\n`
    : head;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${title}</title>
${assets}</head>
<body>
<main>
${main}
</main>
</body>
</html>
`;
}

/** The page for a signed-in user: the markup the script fills in. */
export function dashboardPage(ownerId: string): HttpResponse {
  return html(
    200,
    shell(
      'API keys',
      `<h1>API keys</h1>
<p class="account">Account: <strong>${escapeHtml(ownerId)}</strong></p>
<div id="error" class="error" role="alert" hidden></div>
<div id="leak-warnings"></div>
<div id="reveal-region" aria-live="polite"></div>
<section class="card" aria-labelledby="create-heading">
<h2 id="create-heading">Create a key</h2>
<form id="create-form" class="create">
<div class="field"><label for="create-name">Name</label>
<input id="create-name" name="name" required maxlength="100" autocomplete="off"></div>
<div class="field"><label for="create-expiry">Expires</label>
<select id="create-expiry" name="expiry">
<option value="">Never</option>
<option value="604800">In 7 days</option>
<option value="2592000">In 30 days</option>
<option value="7776000">In 90 days</option>
<option value="31536000">In 1 year</option>
</select></div>
<div class="field"><label for="create-scopes">Scopes</label>
<input id="create-scopes" name="scopes" autocomplete="off" aria-describedby="create-scopes-hint">
<p id="create-scopes-hint" class="hint">Separated by spaces, such as api_keys:read. Empty: all of yours.</p></div>
<details class="limits">
<summary id="create-limits">Rate limit and credits (optional)</summary>
<div class="limits-fields">
<div class="field"><label for="create-rate">Requests per window</label>
<input id="create-rate" type="number" min="1" max="1000000" step="1" inputmode="numeric" autocomplete="off" aria-describedby="create-rate-hint">
<p id="create-rate-hint" class="hint">Empty: no rate limit.</p></div>
<div class="field"><label for="create-window">Window, in seconds</label>
<input id="create-window" type="number" min="1" max="86400" step="1" value="60" inputmode="numeric" autocomplete="off"></div>
<div class="field"><label for="create-credits">Credits</label>
<input id="create-credits" type="number" min="0" max="2147483647" step="1" inputmode="numeric" autocomplete="off" aria-describedby="create-credits-hint">
<p id="create-credits-hint" class="hint">Each request spends one. Empty: unmetered.</p></div>
<div class="field"><label for="create-refill">Refill to</label>
<input id="create-refill" type="number" min="1" max="2147483647" step="1" inputmode="numeric" autocomplete="off" aria-describedby="create-refill-hint">
<p id="create-refill-hint" class="hint">Empty: never refilled.</p></div>
<div class="field"><label for="create-refill-every">Refill every</label>
<select id="create-refill-every">
<option value="day">Day (00:00 UTC)</option>
<option value="month" selected>Month (the 1st, 00:00 UTC)</option>
</select></div>
</div>
</details>
<div class="field"><button type="submit">Create key</button></div>
</form>
</section>
<section aria-labelledby="keys-heading">
<h2 id="keys-heading">Your keys</h2>
<p id="keys-status" role="status">Loading…</p>
<table id="keys" hidden>
<thead><tr id="keys-head"></tr></thead>
<tbody id="keys-body"></tbody>
</table>
</section>
<dialog id="roll-dialog" aria-labelledby="roll-title">
<form method="dialog">
<h2 id="roll-title">Roll <span id="roll-name"></span></h2>
<p id="roll-leak-note" class="leak-note" hidden></p>
<p>A new key replaces this one. The old key keeps working for:</p>
<div class="field"><label for="roll-grace">Grace period</label>
<select id="roll-grace">
<option value="0">None: it stops now</option>
<option value="3600">1 hour</option>
<option value="86400" selected>1 day</option>
<option value="604800">7 days</option>
</select></div>
<div class="actions"><button value="cancel" class="secondary">Cancel</button><button value="confirm">Roll key</button></div>
</form>
</dialog>
<dialog id="revoke-dialog" aria-labelledby="revoke-title">
<form method="dialog">
<h2 id="revoke-title">Revoke <span id="revoke-name"></span>?</h2>
<p>Requests with this key fail from now on. This cannot be undone.</p>
<label class="check"><input type="checkbox" id="revoke-cascade"> Also revoke every key it created</label>
<div class="actions"><button value="cancel" class="secondary">Cancel</button><button value="confirm" class="danger">Revoke key</button></div>
</form>
</dialog>`,
      true,
    ),
  );
}

/** 401 for a visitor the host's `authorize` does not know. */
export function signedOutPage(): HttpResponse {
  return html(
    401,
    shell(
      'Sign in to manage API keys',
      '<h1>You are not signed in</h1>\n<p>Sign in to this site first, then come back to this page to manage your API keys.</p>',
      false,
    ),
  );
}

export function htmlErrorPage(status: 404 | 500): HttpResponse {
  const text =
    status === 404
      ? ['Not found', 'There is no such page.']
      : ['Something went wrong', 'The page could not be shown. Try again later.'];
  return html(status, shell(text[0] ?? '', `<h1>${text[0]}</h1>\n<p>${text[1]}</p>`, false));
}

const immutable = 'public, max-age=31536000, immutable';
const assetTypes = [
  [dashboardScript, 'text/javascript; charset=utf-8'],
  [dashboardStyle, 'text/css; charset=utf-8'],
  [dashboardIcon, 'image/svg+xml'],
] as const;

/** A prebuilt asset by its hashed name; `undefined` for any other name (an old hash). */
export function dashboardAsset(name: string): HttpResponse | undefined {
  const asset = assetTypes.find(([a]) => a.name === name);
  if (!asset) return undefined;
  const [{ body }, type] = asset;
  return {
    status: 200,
    headers: {
      'Content-Type': type,
      'Content-Length': String(Buffer.byteLength(body)),
      'Cache-Control': immutable,
      'X-Content-Type-Options': 'nosniff',
    },
    body,
  };
}
