import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export interface SoakExample {
  url: string;
  diagnosticsUrl: string;
  /** `<account> -> rawKey` for the bootstrap keys printed on start. */
  bootstrap: Map<string, string>;
  /** Lines printed so far on stdout and stderr, bounded: the soak makes the example log a
   * line per refused key, which is not worth keeping. */
  tail(lines: number): string;
  /** SIGTERM, then the exit code (`null` if a signal ended it). */
  stop(): Promise<number | null>;
}

/**
 * Starts an example with diagnostics on, the way a deployment runs it: node itself, with
 * tsx as a loader. Not through the tsx CLI, which relays signals to its child and kills it
 * outright when the child has not acknowledged one within a few tens of milliseconds:
 * common on a loaded machine, and then the example's clean shutdown is never seen.
 */
export async function startSoakExample(
  framework: 'express' | 'fastify',
  env: Record<string, string>,
): Promise<SoakExample> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--expose-gc',
      '--conditions=keyward-source',
      '--import',
      'tsx',
      `${root}examples/${framework}/src/main.ts`,
    ],
    {
      cwd: `${root}examples/${framework}`,
      env: { ...process.env, PORT: '0', KEYWARD_DIAGNOSTICS: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  let startup = '';
  let started = false;
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    if (!started) startup += text;
    lines.push(...text.split('\n').filter((l) => l.length > 0));
    if (lines.length > 2000) lines.splice(0, lines.length - 1000);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`example did not start:\n${startup}`)), 60_000);
    child.stdout?.on('data', () => {
      if (!started && startup.includes('Ctrl-C stops the server.')) {
        started = true;
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`example exited before it started:\n${startup}`));
    });
  });
  const url = /listening on (http:\/\/\S+)/.exec(startup)?.[1];
  const diagnosticsUrl = /diagnostics \(KEYWARD_DIAGNOSTICS=1\): (\S+)/.exec(startup)?.[1];
  if (!url || !diagnosticsUrl) {
    throw new Error(`no URLs in the example's output:\n${startup.replace(/rep_\w{50}/g, 'rep_…')}`);
  }
  const bootstrap = new Map<string, string>();
  for (const match of startup.matchAll(/^(\S+) (rep_[0-9A-Za-z]{50})$/gm)) {
    bootstrap.set(match[1] as string, match[2] as string);
  }
  return {
    url,
    diagnosticsUrl,
    bootstrap,
    tail: (count) => lines.slice(-count).join('\n'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
