import { KeywardError } from './errors.js';

/** Longest name, in Unicode code points after trimming. */
export const MAX_NAME_LENGTH = 100;

// C0, DEL and C1 controls: invisible in a dashboard, and NUL breaks Postgres text.
const controlCharacter = /\p{Cc}/u;
// Format characters (zero-width spaces and joiners, soft hyphens, bidi overrides and
// isolates, tag characters) and the line and paragraph separators: they change how a name
// displays without showing themselves, so a name could pass for another
// ("\u202Egpj.exe" displays as "exe.jpg"). Emoji joined by U+200D fall under this too.
const invisibleOrReordering = /[\p{Cf}\p{Zl}\p{Zp}]/u;
// A name must show something: a letter, digit, punctuation or symbol. The Hangul fillers
// and the blank braille pattern are letters and symbols that draw nothing.
const visibleCharacter = /[\p{L}\p{N}\p{P}\p{S}]/u;
const blankLookalikes = /[\u115F\u1160\u2800\u3164\uFFA0]/gu;

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
  if (invisibleOrReordering.test(name)) {
    throw invalidName(
      '`name` must not contain invisible formatting characters (zero-width, bidi controls) or line separators.',
    );
  }
  if (!visibleCharacter.test(name.replace(blankLookalikes, ''))) {
    throw invalidName('`name` must contain at least one visible character.');
  }
  if ([...name].length > MAX_NAME_LENGTH) {
    throw invalidName(`\`name\` must be at most ${MAX_NAME_LENGTH} characters.`);
  }
  return name;
}

function invalidName(message: string): KeywardError {
  return new KeywardError('invalid_request', { message });
}
