import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface RunningExample {
  url: string;
  /** `<account> -> rawKey` for the bootstrap keys printed on start. */
  bootstrap: Map<string, string>;
  /** Everything the process printed so far, both streams. */
  output(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, for a test that gave up on a clean stop; then the exit. */
  kill(): Promise<void>;
  /** Milliseconds from spawn to "listening". */
  startupMs: number;
}

/**
 * Starts an example app as its `start` script does (node with tsx's loader on its entry
 * point) on a free port. Not through the tsx CLI: on a loaded machine it SIGKILLs a child
 * that takes more than a few ms to acknowledge SIGTERM, which would cut the clean shutdown
 * these tests check.
 */
export async function startExample(
  framework: 'express' | 'fastify' | 'hono',
  env: Record<string, string> = {},
): Promise<RunningExample> {
  const started = Date.now();
  const child: ChildProcess = spawn(
    process.execPath,
    ['--conditions=keyward-source', '--import', 'tsx', `${root}examples/${framework}/src/main.ts`],
    {
      cwd: `${root}examples/${framework}`,
      env: { ...process.env, PORT: '0', KEYWARD_STORE: 'memory', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`example did not start:\n${out}`)), 60_000);
    const check = () => {
      if (out.includes('Ctrl-C stops the server.')) {
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
  const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
  if (!url) throw new Error(`no URL in the example's output:\n${out}`);
  const bootstrap = new Map<string, string>();
  for (const match of out.matchAll(/^(\S+) (rep_[0-9A-Za-z]{50})$/gm)) {
    bootstrap.set(match[1] as string, match[2] as string);
  }
  return {
    url,
    bootstrap,
    startupMs,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
