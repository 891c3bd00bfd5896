/**
 * `pnpm bench` still runs end to end: the smallest run the harness allows (Fastify on the
 * memory store, unguarded and warm, a fraction of a second each) must finish, write its
 * rows, and print no raw key. The figures themselves are not judged here: on a shared
 * machine a fraction of a second says nothing about throughput.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

it('pnpm bench runs end to end and writes its rows', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-bench-'));
  try {
    const out = join(dir, 'rows.json');
    const { stdout } = await run(
      process.execPath,
      [
        '--conditions=keyward-source',
        '--import',
        'tsx',
        'bench/run.ts',
        '--quick',
        '--stores=memory',
        '--frameworks=fastify',
        '--scenarios=guarded-warm',
        '--duration=0.2',
        '--cold-keys=1',
        '--skip-memory',
        `--out=${out}`,
      ],
      { cwd: root, timeout: 60_000 },
    );
    const rows = JSON.parse(await readFile(out, 'utf8')) as Array<Record<string, unknown>>;
    expect(rows.map((r) => `${r.framework}/${r.store}/${r.scenario}`)).toEqual([
      'fastify/memory/unguarded',
      'fastify/memory/guarded-warm',
    ]);
    for (const row of rows) {
      expect(Object.keys(row).sort()).toEqual(
        ['framework', 'store', 'scenario', 'reqPerSec', 'p50Ms', 'p99Ms', 'ratio'].sort(),
      );
      expect(row.reqPerSec).toBeGreaterThan(0);
      expect(row.ratio).toBeGreaterThan(0);
    }
    expect(stdout).toContain('| fastify   | memory | guarded-warm |');
    expect(stdout).not.toMatch(/rep_[0-9A-Za-z]{50}/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
