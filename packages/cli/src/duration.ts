import { usageError } from './errors.js';

const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/**
 * Whole seconds from a duration such as `30d`, `24h`, `90m`, `45s`, `2w` or a bare number
 * of seconds, within the range the key service accepts for that flag.
 */
export function parseDuration(
  flag: string,
  value: string,
  range: { min: number; max: number },
): number {
  const match = /^(\d{1,12})([smhdw]?)$/.exec(value.trim());
  const seconds = match ? Number(match[1]) * (units[match[2] || 's'] as number) : Number.NaN;
  if (!(seconds >= range.min && seconds <= range.max)) {
    throw usageError(
      `${flag} must be a duration from ${spell(range.min)} to ${spell(range.max)}, such as 30d, 24h, 90m or 3600 (seconds); got ${JSON.stringify(value)}.`,
    );
  }
  return seconds;
}

/** The largest whole unit: 315360000 → 3650d. */
function spell(seconds: number): string {
  if (seconds === 0) return '0';
  for (const unit of ['d', 'h', 'm'] as const) {
    const size = units[unit] as number;
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}
