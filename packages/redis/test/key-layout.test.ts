import { describe, expect, it } from 'vitest';
import { escapePart, formatIndexEntry, parseIndexEntry, unescapePart } from '../src/key-layout.js';

describe('escapePart', () => {
  it('leaves ordinary ids unchanged', () => {
    for (const id of [
      'key_0123456789abcdefABCDEF',
      'acct_42',
      '3f1c0e7a-9b2d-4c1e-8f00-1a2b3c4d5e6f',
    ]) {
      expect(escapePart(id)).toBe(id);
    }
  });

  it('escapes every whitespace and control character, so no part holds one', () => {
    const tricky = '\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2028\u2029\u202f\u3000\ufeff\u0000\u007f';
    const escaped = escapePart(`a${tricky}b`);
    expect(escaped).not.toMatch(/[\s\p{Cc}]/u);
    expect(escaped).toBe(
      'a%09%0A%0B%0C%0D%20%85%A0%u1680%u2000%u2028%u2029%u202F%u3000%uFEFF%00%7Fb',
    );
    expect(parseIndexEntry(formatIndexEntry(escaped, escapePart('x y'), 'n'))).toEqual({
      owner: escaped,
      id: 'x%20y',
    });
  });

  it('keeps the hash tag and the mapping one-to-one', () => {
    const parts = ['a}b', 'a%7Db', '\u2028', ' 28', '%2028', '\ud800', '\udc00', '\ufffd', '😀'];
    const escaped = parts.map(escapePart);
    expect(new Set(escaped).size).toBe(parts.length);
    for (const [i, part] of parts.entries()) expect(unescapePart(escaped[i] ?? '')).toBe(part);
    expect(escaped.join('')).not.toMatch(/[{}]/);
  });

  it('writes what the first layout wrote for `%`, braces and the space', () => {
    expect(escapePart('% {}')).toBe('%25%20%7B%7D');
  });
});
