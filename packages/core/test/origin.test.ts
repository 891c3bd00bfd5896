import { describe, expect, it } from 'vitest';
import { hasSameOriginProof, parseTrustedOrigins } from '../src/origin.js';

describe('same-origin proof for session-admitted writes', () => {
  const own = (headers: Record<string, string>) => hasSameOriginProof(headers, undefined);

  it('Sec-Fetch-Site: same-origin is proof; same-site and cross-site are not', () => {
    expect(own({ 'sec-fetch-site': 'same-origin' })).toBe(true);
    expect(own({ 'sec-fetch-site': 'same-site', host: 'a.example' })).toBe(false);
    expect(own({ 'sec-fetch-site': 'cross-site', host: 'a.example' })).toBe(false);
  });

  it('by default an Origin naming the Host the request was sent to, default ports written or not', () => {
    expect(own({ origin: 'http://127.0.0.1:3000', host: '127.0.0.1:3000' })).toBe(true);
    expect(own({ origin: 'https://app.example', host: 'app.example' })).toBe(true);
    expect(own({ origin: 'https://app.example', host: 'APP.example:443' })).toBe(true);
    expect(own({ origin: 'https://app.example', host: 'app.example:80' })).toBe(false);
    expect(own({ origin: 'http://127.0.0.1:3001', host: '127.0.0.1:3000' })).toBe(false);
    expect(own({ origin: 'https://evil.example', host: 'app.example' })).toBe(false);
  });

  it('no Origin, Origin: null, a non-http Origin, or no Host: no proof', () => {
    expect(own({ host: 'app.example' })).toBe(false);
    expect(own({ origin: 'null', host: 'app.example' })).toBe(false);
    expect(own({ origin: 'file://app.example', host: 'app.example' })).toBe(false);
    expect(own({ origin: 'https://app.example' })).toBe(false);
    expect(own({ origin: 'not a url', host: 'app.example' })).toBe(false);
  });

  it('with trustedOrigins, only those origins pass, the request’s own Host no longer does', () => {
    const trusted = parseTrustedOrigins(['https://App.example/', 'http://localhost:5173']);
    expect(
      hasSameOriginProof({ origin: 'https://app.example', host: 'api.example' }, trusted),
    ).toBe(true);
    expect(
      hasSameOriginProof({ origin: 'http://localhost:5173', host: 'api.example' }, trusted),
    ).toBe(true);
    expect(
      hasSameOriginProof({ origin: 'https://api.example', host: 'api.example' }, trusted),
    ).toBe(false);
    expect(hasSameOriginProof({ 'sec-fetch-site': 'same-origin' }, trusted)).toBe(true);
  });

  it('rejects trustedOrigins that are not http(s) origins, with a clear message', () => {
    expect(() => parseTrustedOrigins(['app.example'])).toThrow(
      /trustedOrigins must be http\(s\) origins/,
    );
    expect(() => parseTrustedOrigins(['ftp://app.example'])).toThrow(/trustedOrigins/);
  });
});
