import { describe, expect, it } from 'vitest';
import {
  holdsScopes,
  parseCreateExpiry,
  parseExpiresAt,
  parseMetadata,
  parseRollGrace,
  parseScopes,
} from '../src/key-fields.js';

const now = new Date('2026-12-01T12:00:00.000Z');

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toMatchObject({ code: 'invalid_request' });
    return (error as Error).message;
  }
  throw new Error('expected invalid_request');
}

describe('expiry fields', () => {
  it('reads an instant with a zone, to the millisecond', () => {
    expect(parseExpiresAt('2027-01-31T00:00:00Z', now)).toEqual(new Date('2027-01-31T00:00:00Z'));
    expect(parseExpiresAt('2027-01-31T01:00:00.123+01:00', now).toISOString()).toBe(
      '2027-01-31T00:00:00.123Z',
    );
  });

  it.each([
    ['a date alone', '2027-01-31'],
    ['a local time with no zone', '2027-01-31T00:00:00'],
    ['a number', 1_800_000_000_000],
    ['an impossible date', '2027-02-30T00:00:00Z'],
    ['free text', 'tomorrow'],
  ])('refuses %s', (_, value) => {
    expect(refusal(() => parseExpiresAt(value, now))).toMatch(/expiresAt/);
  });

  it('refuses the present, the past and more than 10 years ahead', () => {
    expect(refusal(() => parseExpiresAt(now.toISOString(), now))).toMatch(/in the future/);
    expect(refusal(() => parseExpiresAt('2020-01-01T00:00:00Z', now))).toMatch(/in the future/);
    expect(refusal(() => parseExpiresAt('2036-12-01T12:00:00.001Z', now))).toMatch(/10 years/);
    expect(parseExpiresAt('2036-12-01T12:00:00.000Z', now)).toEqual(
      new Date('2036-12-01T12:00:00.000Z'),
    );
  });

  it('expiresIn: whole seconds from 60 to 315,360,000; not with expiresAt', () => {
    expect(parseCreateExpiry({ expiresIn: 60 }, now)).toEqual(new Date(now.getTime() + 60_000));
    expect(parseCreateExpiry({ expiresIn: 315_360_000 }, now)?.getTime()).toBe(
      now.getTime() + 315_360_000_000,
    );
    for (const expiresIn of [59, 315_360_001, 60.5, '60', -1, null]) {
      expect(refusal(() => parseCreateExpiry({ expiresIn }, now))).toMatch(/expiresIn/);
    }
    expect(
      refusal(() => parseCreateExpiry({ expiresIn: 60, expiresAt: '2027-01-01T00:00:00Z' }, now)),
    ).toMatch(/not both/);
    expect(parseCreateExpiry({}, now)).toBeNull();
  });
});

describe('scopes', () => {
  it('accepts 1 to 50 unique scopes of the allowed characters, or *', () => {
    expect(parseScopes(['*'])).toEqual(['*']);
    expect(parseScopes(['orders:read', 'a.b-c_D:9'])).toEqual(['orders:read', 'a.b-c_D:9']);
    expect(parseScopes(Array.from({ length: 50 }, (_, i) => `s${i}`))).toHaveLength(50);
  });

  it.each([
    ['an empty list', []],
    ['51 scopes', Array.from({ length: 51 }, (_, i) => `s${i}`)],
    ['a repeated scope', ['a', 'a']],
    ['a space', ['orders read']],
    ['65 characters', ['x'.repeat(65)]],
    ['an empty string', ['']],
    ['a number', [1]],
    ['a string instead of a list', 'orders:read'],
    ['a wildcard inside a name', ['orders:*']],
  ])('refuses %s', (_, value) => {
    expect(refusal(() => parseScopes(value))).toMatch(/scopes/);
  });

  it('* holds every scope; otherwise every needed scope must be held', () => {
    expect(holdsScopes(['*'], ['anything', 'api_keys:write'])).toBe(true);
    expect(holdsScopes(['a', 'b'], ['b', 'a'])).toBe(true);
    expect(holdsScopes(['a'], ['a', 'b'])).toBe(false);
    expect(holdsScopes(['a'], [])).toBe(true);
    expect(holdsScopes(['a'], ['*'])).toBe(false);
  });
});

describe('metadata', () => {
  it('accepts an object up to 3 levels and 2 KiB, and returns a copy', () => {
    const value = { a: { b: { c: 1 } }, list: [1, 2] };
    const parsed = parseMetadata(value);
    expect(parsed).toEqual(value);
    expect(parsed).not.toBe(value);
    const exact = { p: 'x'.repeat(2048 - '{"p":""}'.length) };
    expect(JSON.stringify(exact)).toHaveLength(2048);
    expect(parseMetadata(exact)).toEqual(exact);
  });

  it.each([
    ['null', null],
    ['an array', [1]],
    ['a string', 'x'],
    ['4 levels', { a: { b: { c: {} } } }],
    ['4 levels through arrays', { a: [[{}]] }],
    ['2049 bytes', { p: 'x'.repeat(2049 - '{"p":""}'.length) }],
    ['2 KiB counted in UTF-8 bytes', { p: 'é'.repeat(1100) }],
  ])('refuses %s', (_, value) => {
    expect(refusal(() => parseMetadata(value))).toMatch(/metadata/);
  });
});

describe('roll grace', () => {
  it('defaults to a day, accepts 0 to 7 days in whole seconds', () => {
    expect(parseRollGrace(undefined)).toBe(86_400);
    expect(parseRollGrace(0)).toBe(0);
    expect(parseRollGrace(604_800)).toBe(604_800);
    for (const value of [-1, 604_801, 1.5, '10', null]) {
      expect(refusal(() => parseRollGrace(value))).toMatch(/expiresIn/);
    }
  });
});
