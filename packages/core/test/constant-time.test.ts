import * as crypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { constantTimeEqual } from '../src/constant-time.js';

// Watches the one comparison, to show that a length mismatch goes through it too.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

describe('constantTimeEqual', () => {
  it('is true for equal strings, including empty and non-ASCII ones', () => {
    expect(constantTimeEqual('rep_secret', 'rep_secret')).toBe(true);
    expect(constantTimeEqual('', '')).toBe(true);
    expect(constantTimeEqual('ключ🔑', 'ключ🔑')).toBe(true);
  });

  it('is false for strings that differ anywhere, in length, or only in encoding form', () => {
    expect(constantTimeEqual('rep_secret', 'rep_secreT')).toBe(false);
    expect(constantTimeEqual('Aep_secret', 'rep_secret')).toBe(false);
    expect(constantTimeEqual('rep_secret', 'rep_secret\0')).toBe(false);
    expect(constantTimeEqual('rep', 'rep_secret')).toBe(false);
    expect(constantTimeEqual('', 'x')).toBe(false);
    // NFC and NFD spellings of the same text are different secrets.
    expect(constantTimeEqual('\u00e9', 'e\u0301')).toBe(false);
  });

  it('takes the same path when the lengths differ: one timingSafeEqual on two digests', () => {
    const spy = vi.mocked(crypto.timingSafeEqual);
    for (const [a, b] of [
      ['short', 'a much longer candidate'],
      ['same length!', 'same length?'],
      ['', 'x'.repeat(10_000)],
    ] as const) {
      spy.mockClear();
      expect(constantTimeEqual(a, b)).toBe(false);
      expect(spy).toHaveBeenCalledTimes(1);
      const [left, right] = spy.mock.calls[0] as [Buffer, Buffer];
      expect([left.byteLength, right.byteLength]).toEqual([32, 32]);
    }
  });
});
