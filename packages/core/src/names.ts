import { KeywardError } from './errors.js';

/** Longest name, in Unicode code points after trimming. */
export const MAX_NAME_LENGTH = 100;

// C0, DEL and C1 controls: invisible in a dashboard, and NUL breaks Postgres text.
const controlCharacter = /\p{Cc}/u;

/**
 * The one place a key's name is checked, for the HTTP layer and the programmatic API alike.
 * Returns the trimmed name or throws `invalid_request` with a message that says what is
 * wrong.
 */
export function normalizeKeyName(value: unknown): string {
  if (value === undefined) throw invalidName('`name` is required.');
  if (typeof value !== 'string') throw invalidName('`name` must be a string.');
  const name = value.trim();
  if (name.length === 0) throw invalidName('`name` must not be empty.');
  if (!name.isWellFormed()) throw invalidName('`name` must be valid Unicode text.');
  if (controlCharacter.test(name)) throw invalidName('`name` must not contain control characters.');
  if ([...name].length > MAX_NAME_LENGTH) {
    throw invalidName(`\`name\` must be at most ${MAX_NAME_LENGTH} characters.`);
  }
  return name;
}

function invalidName(message: string): KeywardError {
  return new KeywardError('invalid_request', { message });
}
