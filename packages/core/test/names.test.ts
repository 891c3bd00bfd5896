import { describe, expect, it } from 'vitest';
import { normalizeKeyName } from '../src/names.js';

function refusal(value: unknown): string | undefined {
  try {
    normalizeKeyName(value);
    return undefined;
  } catch (error) {
    expect(error).toMatchObject({ code: 'invalid_request' });
    return (error as Error).message;
  }
}

describe('normalizeKeyName', () => {
  it.each([
    ['a zero-width space alone', '\u200B'],
    ['a soft hyphen alone', '\u00AD'],
    ['a right-to-left override that makes "gpj.exe" display as "exe.jpg"', '\u202Egpj.exe'],
    ['a left-to-right isolate', 'prod\u2066key\u2069'],
    ['a line separator', 'prod\u2028key'],
    ['a paragraph separator', 'prod\u2029key'],
    ['a zero-width joiner between words', 'prod\u200Dkey'],
    ['a byte order mark inside the name', 'prod\uFEFFkey'],
  ])('refuses %s', (_, name) => {
    expect(refusal(name)).toMatch(/invisible formatting characters/);
  });

  it.each([
    ['a Hangul filler alone', '\u3164'],
    ['a blank braille pattern alone', '\u2800'],
    ['combining marks alone', '\u0301\u0301'],
    ['a half-width Hangul filler with a combining mark', '\uFFA0\u0301'],
  ])('refuses a name with no visible character: %s', (_, name) => {
    expect(refusal(name)).toBe('`name` must contain at least one visible character.');
  });

  it.each([
    'Production Server',
    'Clé de prod',
    'ключ',
    '本番サーバー',
    'مفتاح الإنتاج',
    'deploy 🚀',
    'a\u3000b',
    'e\u0301',
  ])('keeps ordinary names in any script: %j', (name) => {
    expect(normalizeKeyName(`  ${name} `)).toBe(name);
  });

  it('still refuses control characters, empty names and names over 100 code points', () => {
    expect(refusal('a\u0000b')).toMatch(/control characters/);
    expect(refusal(' \t ')).toBe('`name` must not be empty.');
    expect(refusal('😀'.repeat(101))).toMatch(/at most 100/);
    expect(normalizeKeyName('😀'.repeat(100))).toHaveLength(200);
  });
});
