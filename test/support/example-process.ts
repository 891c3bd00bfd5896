import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface ExampleOptions {
  /** Node flags before the loader's, e.g. `--expose-gc` for the soak's heap readings. */
  nodeArgs?: string[];
  /** Keep only about this many of the latest characters of output (the soak makes the
   * example log a line per refused key, which is not worth keeping). @default all */
  maxOutput?: number;
}

export interface RunningExample {
  url: string;
  /** Where the diagnostics window answers, when KEYWARD_DIAGNOSTICS=1. */
  diagnosticsUrl: string | undefined;
  /** `<account> -> rawKey` for the bootstrap keys printed on start. */
  bootstrap: Map<string, string>;
  /** Everything the process printed so far, both streams (see `maxOutput`). */
  output(): string;
  /** The last `lines` lines of `output()`. */
  tail(lines: number): string;
  /** SIGTERM, then the exit code (`null` if a signal ended it). */
  stop(): Promise<number | null>;
  /** SIGKILL, for a test that gave up on a clean stop; then the exit. */
  kill(): Promise<void>;
  /** Milliseconds from spawn to "listening". */
  startupMs: number;
}

/**
 * Starts an example app as its `start` script does (node with tsx's loader on its entry
 * point) on a free port, on the memory store unless `env` says otherwise. Not through the
 * tsx CLI: on a loaded machine it SIGKILLs a child that takes more than a few ms to
 * acknowledge SIGTERM, which would cut the clean shutdown the tests and the soak check.
 */
export async function startExample(
  framework: 'express' | 'fastify' | 'hono',
  env: Record<string, string> = {},
  options: ExampleOptions = {},
): Promise<RunningExample> {
  const started = Date.now();
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
      '--conditions=keyward-source',
      '--import',
      'tsx',
      `${root}examples/${framework}/src/main.ts`,
    ],
    {
      cwd: `${root}examples/${framework}`,
      env: { ...process.env, PORT: '0', KEYWARD_STORE: 'memory', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  // What the example printed until it said it listens: what the URLs and keys come from.
  let startup: string | undefined;
  const record = (chunk: Buffer) => {
    out += chunk.toString();
    const max = options.maxOutput;
    if (startup !== undefined && max !== undefined && out.length > 2 * max) out = out.slice(-max);
  };
  child.stdout?.on('data', record);
  child.stderr?.on('data', record);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`example did not start:\n${out}`)), 60_000);
    const check = () => {
      if (startup === undefined && out.includes('Ctrl-C stops the server.')) {
        startup = out;
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`example exited before it started:\n${out}`));
    });
  });
  const startupMs = Date.now() - started;
  const printed = startup ?? out;
  const url = /listening on (http:\/\/\S+)/.exec(printed)?.[1];
  if (!url) throw new Error(`no URL in the example's output:\n${redacted(printed)}`);
  const diagnosticsUrl = /diagnostics \(KEYWARD_DIAGNOSTICS=1\): (\S+)/.exec(printed)?.[1];
  const bootstrap = new Map<string, string>();
  for (const match of printed.matchAll(/^(\S+) (rep_[0-9A-Za-z]{50})$/gm)) {
    bootstrap.set(match[1] as string, match[2] as string);
  }
  return {
    url,
    diagnosticsUrl,
    bootstrap,
    startupMs,
    output: () => out,
    tail: (lines) => out.trimEnd().split('\n').slice(-lines).join('\n'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Output fit for an error message: bootstrap keys masked. */
function redacted(text: string): string {
  return text.replace(/rep_\w{50}/g, 'rep_…');
}
