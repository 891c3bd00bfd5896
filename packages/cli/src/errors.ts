/** The exit codes of every command, in one table. */
export const EXIT = {
  ok: 0,
  /** The key was refused, not found, or `scan` found keys. */
  refused: 1,
  /** A flag, an argument or a setting is wrong: the message says which, and how to fix it. */
  usage: 2,
  /** The store did not answer, or is not set up (run `keyward migrate`). */
  storeUnavailable: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * What a command reports instead of succeeding: an exit code and one line for stderr that
 * names the fix. Its message never holds a raw key.
 */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError(EXIT.usage, message);
export const storeError = (message: string) => new CliError(EXIT.storeUnavailable, message);

/** An error's message on one line, whatever it held. */
export function oneLine(text: string): string {
  // The libraries start their messages with `keyward: `, which the command line prints.
  return text
    .replace(/\s*[\r\n]+\s*/g, ' ')
    .trim()
    .replace(/^keyward: /, '');
}
