/** Where a command reads and writes: the process's streams, or a test's. */
export interface CliIo {
  /** Writes to stdout (what scripts read: a raw key, JSON, findings). */
  out(text: string): void;
  /** Writes one line to stderr (errors, warnings, summaries). */
  err(line: string): void;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export type Command = (argv: string[], io: CliIo) => Promise<number>;

/** Prints a command's help on stdout; exit 0. */
export function help(io: CliIo, text: string): number {
  io.out(`${text}\n`);
  return 0;
}
