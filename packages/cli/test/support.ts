import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const bin = fileURLToPath(new URL('../src/bin.ts', import.meta.url));
// By URL: `--import tsx` would be resolved from the child's working directory, which a test
// may set outside the workspace.
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time of the whole process, milliseconds. */
  ms: number;
}

/**
 * Runs `keyward <args>` as a process, from its sources as the examples start (node with
 * tsx's loader and the keyward-source condition), so no build is needed. The store comes
 * from `env` alone: the variables of the test process are not passed on.
 */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string; cwd?: string } = {},
): Promise<CliRun> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    ['--conditions=keyward-source', '--import', tsx, bin, ...args],
    {
      cwd: options.cwd ?? process.cwd(),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) =>
      resolve({ code, stdout, stderr, ms: Math.round(performance.now() - started) }),
    );
  });
}

export const tempDir = (label: string) => mkdtempSync(join(tmpdir(), `keyward-cli-${label}-`));
export const randomId = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`;
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** A raw key as printed alone on stdout. */
export const RAW_KEY_LINE = /^rep_[0-9A-Za-z]{50}\n$/;
