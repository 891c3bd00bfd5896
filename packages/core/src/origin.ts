import type { HttpRequest } from './http.js';

/**
 * The host's own origins, as `authorize`'s writes check them: each `trustedOrigins` entry
 * reduced to its origin (scheme, host, port), so `https://app.example.com/` and
 * `https://APP.example.com:443` name the same one. `undefined`: the request's own origin.
 */
export function parseTrustedOrigins(
  origins: readonly string[] | undefined,
): Set<string> | undefined {
  if (origins === undefined) return undefined;
  const parsed = new Set<string>();
  for (const origin of origins) {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
      throw new TypeError(
        `keyward: trustedOrigins must be http(s) origins; got ${JSON.stringify(origin)}.`,
      );
    }
    parsed.add(url.origin);
  }
  return parsed;
}

/**
 * Whether a cookie-admitted write comes from the host's own pages (docs/design.md, "Host
 * sign-in"): the browser says so (`Sec-Fetch-Site: same-origin`), or its `Origin` is a
 * trusted one (by default the origin the request was sent to, read from `Host`). A request
 * with neither, `Origin: null` (a sandboxed frame, a redirect) or a foreign one is refused:
 * a cross-site form or script cannot forge these headers.
 */
export function hasSameOriginProof(
  headers: HttpRequest['headers'],
  trusted: ReadonlySet<string> | undefined,
): boolean {
  if (single(headers['sec-fetch-site']) === 'same-origin') return true;
  const origin = single(headers.origin);
  if (origin === undefined || origin === 'null') return false;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
  if (trusted) return trusted.has(url.origin);
  const host = single(headers.host);
  if (host === undefined) return false;
  // The scheme is not in the request (TLS may end at a proxy): the host and port decide,
  // the port written out so that `Host: example.com:443` matches `https://example.com`.
  return withPort(url.host, url.protocol) === withPort(host.toLowerCase(), url.protocol);
}

function withPort(host: string, protocol: string): string {
  if (/:\d+$/.test(host) && !host.endsWith(']')) return host;
  return `${host}:${protocol === 'https:' ? 443 : 80}`;
}

/** One value of a header: a repeated one (only from a caller that built the record) is
 * no proof. */
function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}
