import { KeywardError } from './errors.js';
import type { Credits, KeyMetadata, RateLimit } from './store.js';

/** Every scope: a key holding it may do anything. */
export const ALL_SCOPES = '*';
export const MAX_SCOPES = 50;
const scopePattern = /^[A-Za-z0-9_.:-]{1,64}$/;

/** Longest lifetime a key may be given: 10 years. */
export const MAX_EXPIRES_IN_SECONDS = 315_360_000;
export const MIN_EXPIRES_IN_SECONDS = 60;
/** How long an old key keeps working after a roll, at most (7 days) and by default (1 day). */
export const MAX_ROLL_GRACE_SECONDS = 604_800;
export const DEFAULT_ROLL_GRACE_SECONDS = 86_400;

export const MAX_METADATA_BYTES = 2048;
export const MAX_METADATA_DEPTH = 3;

// An instant with a zone, as ISO 8601 writes it: `2027-01-31T00:00:00Z`,
// `2027-01-31T01:00:00.5+01:00`. A date alone or a local time names no instant.
const instantPattern =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/i;

/**
 * The expiry a create asks for: `expiresAt` (an instant, strictly in the future, at most 10
 * years ahead) or `expiresIn` (whole seconds, 60 to 315,360,000), not both. `null` when
 * neither is given.
 */
export function parseCreateExpiry(
  fields: { expiresAt?: unknown; expiresIn?: unknown },
  now: Date,
): Date | null {
  const { expiresAt, expiresIn } = fields;
  if (expiresAt !== undefined && expiresIn !== undefined) {
    throw invalid('Give `expiresAt` or `expiresIn`, not both.');
  }
  if (expiresIn !== undefined) {
    if (
      !Number.isSafeInteger(expiresIn) ||
      (expiresIn as number) < MIN_EXPIRES_IN_SECONDS ||
      (expiresIn as number) > MAX_EXPIRES_IN_SECONDS
    ) {
      throw invalid(
        `\`expiresIn\` must be whole seconds from ${MIN_EXPIRES_IN_SECONDS} to ${MAX_EXPIRES_IN_SECONDS.toLocaleString('en-US')}.`,
      );
    }
    return new Date(now.getTime() + (expiresIn as number) * 1000);
  }
  if (expiresAt !== undefined) return parseExpiresAt(expiresAt, now);
  return null;
}

/** An `expiresAt` field: an ISO 8601 instant with a zone, after `now`, at most 10 years
 * ahead. */
export function parseExpiresAt(value: unknown, now: Date): Date {
  if (typeof value !== 'string' || !instantPattern.test(value)) {
    throw invalid(
      '`expiresAt` must be an ISO 8601 instant with a zone, e.g. 2027-01-31T00:00:00Z.',
    );
  }
  const time = Date.parse(value);
  if (Number.isNaN(time) || !sameCalendarDate(value, time)) {
    throw invalid('`expiresAt` must be a real date and time.');
  }
  if (time <= now.getTime()) throw invalid('`expiresAt` must be in the future.');
  const limit = new Date(now);
  limit.setUTCFullYear(limit.getUTCFullYear() + 10);
  if (time > limit.getTime()) throw invalid('`expiresAt` must be at most 10 years ahead.');
  return new Date(time);
}

/** `Date.parse` rolls 2027-02-30 over into March; such a date is refused, not moved. */
function sameCalendarDate(text: string, time: number): boolean {
  const zone = /(Z|[+-]\d{2}:\d{2})$/i.exec(text)?.[1] ?? 'Z';
  const offsetMinutes =
    zone.toUpperCase() === 'Z'
      ? 0
      : (zone.startsWith('-') ? -1 : 1) *
        (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  const local = new Date(time + offsetMinutes * 60_000);
  const [year, month, day] = text.slice(0, 10).split('-').map(Number);
  return (
    local.getUTCFullYear() === year &&
    local.getUTCMonth() + 1 === month &&
    local.getUTCDate() === day
  );
}

/** A `scopes` field: 1 to 50 unique strings, each `*` or 1–64 of `[A-Za-z0-9_.:-]`. */
export function parseScopes(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_SCOPES) {
    throw invalid(`\`scopes\` must be an array of 1 to ${MAX_SCOPES} strings.`);
  }
  for (const scope of value) {
    if (typeof scope !== 'string' || (scope !== ALL_SCOPES && !scopePattern.test(scope))) {
      throw invalid(
        '`scopes` must hold "*" or names of 1 to 64 letters, digits and "_", ".", ":", "-".',
      );
    }
  }
  if (new Set(value).size !== value.length) throw invalid('`scopes` must not repeat a scope.');
  return [...(value as string[])];
}

/** True when `held` grants every scope in `needed` (`*` grants all). */
export function holdsScopes(held: readonly string[], needed: readonly string[]): boolean {
  if (held.includes(ALL_SCOPES)) return true;
  return needed.every((scope) => held.includes(scope));
}

/** A `metadata` field: a JSON object, at most 2 KiB as compact JSON (UTF-8), at most 3
 * levels deep (the object itself is the first). */
export function parseMetadata(value: unknown): KeyMetadata {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid('`metadata` must be a JSON object.');
  }
  if (depthOf(value) > MAX_METADATA_DEPTH) {
    throw invalid(`\`metadata\` must be at most ${MAX_METADATA_DEPTH} levels deep.`);
  }
  const json = JSON.stringify(value);
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) {
    throw invalid(`\`metadata\` must be at most ${MAX_METADATA_BYTES} bytes as compact JSON.`);
  }
  // A fresh copy: no prototype tricks, nothing the caller can change afterwards.
  return JSON.parse(json) as KeyMetadata;
}

function depthOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let deepest = 0;
  for (const child of Object.values(value)) {
    deepest = Math.max(deepest, depthOf(child));
    if (deepest >= MAX_METADATA_DEPTH) break;
  }
  return 1 + deepest;
}

/** A roll's `expiresIn`: seconds the old key keeps working, 0 to 7 days, default 1 day. */
export function parseRollGrace(value: unknown): number {
  if (value === undefined) return DEFAULT_ROLL_GRACE_SECONDS;
  if (
    !Number.isSafeInteger(value) ||
    (value as number) < 0 ||
    (value as number) > MAX_ROLL_GRACE_SECONDS
  ) {
    throw invalid(
      `\`expiresIn\` must be whole seconds from 0 to ${MAX_ROLL_GRACE_SECONDS.toLocaleString('en-US')}.`,
    );
  }
  return value as number;
}

export const MAX_RATE_LIMIT = 1_000_000;
export const MAX_WINDOW_SECONDS = 86_400;
export const MAX_CREDITS = 2 ** 31 - 1;

/** A `rateLimit` field: `null`, or `{ limit: 1..1,000,000, windowSec: 1..86,400 }`. */
export function parseRateLimit(value: unknown): RateLimit | null {
  if (value === null) return null;
  const fields = objectWith(value, ['limit', 'windowSec'], '`rateLimit`');
  return {
    limit: wholeNumber(fields.limit, 1, MAX_RATE_LIMIT, '`rateLimit.limit`'),
    windowSec: wholeNumber(fields.windowSec, 1, MAX_WINDOW_SECONDS, '`rateLimit.windowSec`'),
  };
}

/** A `credits` field: `null`, or `{ remaining: 0..2^31-1, refill?: { amount, every:
 * "day" | "month" } | null, strict?: boolean }`. */
export function parseCredits(value: unknown): Credits | null {
  if (value === null) return null;
  const fields = objectWith(value, ['remaining', 'refill', 'strict'], '`credits`');
  const remaining = wholeNumber(fields.remaining, 0, MAX_CREDITS, '`credits.remaining`');
  let refill: Credits['refill'] = null;
  if (fields.refill !== undefined && fields.refill !== null) {
    const r = objectWith(fields.refill, ['amount', 'every'], '`credits.refill`');
    if (r.every !== 'day' && r.every !== 'month') {
      throw invalid('`credits.refill.every` must be "day" or "month".');
    }
    refill = {
      amount: wholeNumber(r.amount, 1, MAX_CREDITS, '`credits.refill.amount`'),
      every: r.every,
    };
  }
  if (fields.strict !== undefined && typeof fields.strict !== 'boolean') {
    throw invalid('`credits.strict` must be true or false.');
  }
  return { remaining, refill, strict: fields.strict === true };
}

/** A route's `cost`: whole units from 1 to 2^31-1; a host's mistake, so a TypeError. */
export function parseCost(value: unknown): number {
  if (value === undefined) return 1;
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > MAX_CREDITS) {
    throw new TypeError(
      `keyward: \`cost\` must be a whole number from 1 to ${MAX_CREDITS}; got ${String(value)}.`,
    );
  }
  return value as number;
}

function objectWith(
  value: unknown,
  allowed: readonly string[],
  name: string,
): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`${name} must be an object or null.`);
  }
  const fields: Record<string, unknown> = {};
  for (const field of Object.keys(value)) {
    if (!allowed.includes(field)) {
      throw invalid(`${name} takes only ${allowed.map((f) => `\`${f}\``).join(', ')}.`);
    }
    fields[field] = (value as Record<string, unknown>)[field];
  }
  return fields;
}

function wholeNumber(value: unknown, min: number, max: number, name: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw invalid(`${name} must be a whole number from ${min} to ${max.toLocaleString('en-US')}.`);
  }
  return value as number;
}

/** Start of the refill period holding `nowMs` (00:00 UTC of the day, or of the first of
 * the month), and of the next one. */
export function refillPeriod(
  every: 'day' | 'month',
  nowMs: number,
): { start: number; next: number } {
  const d = new Date(nowMs);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  if (every === 'day') {
    const start = Date.UTC(y, m, d.getUTCDate());
    return { start, next: Date.UTC(y, m, d.getUTCDate() + 1) };
  }
  return { start: Date.UTC(y, m, 1), next: Date.UTC(y, m + 1, 1) };
}

function invalid(message: string): KeywardError {
  return new KeywardError('invalid_request', { message });
}
