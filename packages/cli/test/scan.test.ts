import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey } from '@keyward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanText } from '../src/scanner.js';
import { runCli, tempDir } from './support.js';

/** A key-shaped string whose checksum is wrong: its last character changed. */
function lookAlike(prefix: string): string {
  const { rawKey } = generateKey(prefix);
  const last = rawKey.at(-1) === 'a' ? 'b' : 'a';
  return `${rawKey.slice(0, -1)}${last}`;
}

/** Deterministic filler text: words, identifiers with underscores, hex and base64 runs. */
function filler(bytes: number): string {
  const words = ['lorem', 'ipsum', 'api_key', 'token', 'rep_', 'sk_live', 'user_id', 'null'];
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let seed = 42;
  const next = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const lines: string[] = [];
  let size = 0;
  while (size < bytes) {
    let line = '';
    for (let i = 0; i < 12; i++) line += `${words[next() % words.length]} `;
    // A base62 run of 20 to 60 characters after an underscore: near misses for the regex.
    line += `id_${Array.from({ length: 20 + (next() % 41) }, () => alphabet[next() % 62]).join('')}`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join('\n')}\n`;
}

describe('keyward scan', () => {
  const root = tempDir('scan');
  const real = [generateKey('rep').rawKey, generateKey('acme').rawKey, generateKey('rep').rawKey];
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  beforeAll(() => {
    mkdirSync(join(root, 'tree/src/deep/er'), { recursive: true });
    mkdirSync(join(root, 'tree/node_modules/pkg'), { recursive: true });
    // 3 real keys: in a config file, glued to other text in a nested file, inside a binary.
    writeFileSync(
      join(root, 'tree/src/config.ts'),
      `export const config = {\n  apiKey: '${real[0]}',\n};\n`,
    );
    writeFileSync(
      join(root, 'tree/src/deep/er/notes.md'),
      `# notes\n\nline 3\ntoken=${real[1]};\n`,
    );
    writeFileSync(
      join(root, 'tree/dump.bin'),
      Buffer.concat([
        Buffer.from([0, 1, 2, 255, 10, 10]),
        Buffer.from(real[2] as string),
        Buffer.from([0, 0]),
      ]),
    );
    // 3 look-alikes, checksum wrong.
    writeFileSync(
      join(root, 'tree/src/fake.ts'),
      `const a = '${lookAlike('rep')}';\nconst b = "${lookAlike('acme')}";\n`,
    );
    writeFileSync(join(root, 'tree/src/deep/fake.txt'), `${lookAlike('rep')}\n`);
    // 10 MB of other text, in one big file and many small ones.
    writeFileSync(join(root, 'tree/big.log'), filler(8 * 1024 * 1024));
    for (let i = 0; i < 200; i++)
      writeFileSync(join(root, `tree/src/file${i}.txt`), filler(10 * 1024));
    // Skipped: node_modules is not walked.
    writeFileSync(join(root, 'tree/node_modules/pkg/index.js'), `'${generateKey('rep').rawKey}'\n`);
  });

  it('finds exactly the 3 real keys in 10 MB, not the look-alikes, as file:line and masked, exit 1, within a second', async () => {
    const result = await runCli(['scan', 'tree'], { cwd: root });
    expect(result.code).toBe(1);
    const lines = result.stdout.trimEnd().split('\n').sort();
    const mask = (key: string) => `${key.slice(0, key.indexOf('_') + 5)}…${key.slice(-6)}`;
    expect(lines).toEqual(
      [
        `tree/dump.bin:3: ${mask(real[2] as string)}`,
        `tree/src/config.ts:2: ${mask(real[0] as string)}`,
        `tree/src/deep/er/notes.md:4: ${mask(real[1] as string)}`,
      ].sort(),
    );
    for (const key of real) {
      expect(result.stdout).not.toContain(key);
      expect(result.stderr).not.toContain(key);
    }
    const summary = /3 keys in (\d+) files \(([\d.]+) MiB, (\d+) ms\)/.exec(result.stderr);
    expect(summary, result.stderr).not.toBeNull();
    const [, files, mib, scanMs] = summary as RegExpExecArray;
    expect(Number(files)).toBe(206);
    expect(Number(mib)).toBeGreaterThanOrEqual(10);
    // The scan itself; the process adds Node's start and, from sources, tsx's.
    expect(Number(scanMs)).toBeLessThan(1000);
    console.log(
      `keyward scan: ${mib} MiB in ${files} files: ${scanMs} ms scanning, ${result.ms} ms for the whole process (from sources, through tsx)`,
    );
  });

  it('exits 0 with a summary on stderr when nothing is found', async () => {
    const result = await runCli(['scan', 'tree/src/fake.ts', 'tree/big.log'], { cwd: root });
    expect(result).toMatchObject({ code: 0, stdout: '' });
    expect(result.stderr).toMatch(/^keyward scan: no key in 2 files/);
  });

  it('scans the files git tracks by default, not the untracked ones', async () => {
    const repo = join(root, 'repo');
    mkdirSync(join(repo, 'sub'), { recursive: true });
    const tracked = generateKey('rep').rawKey;
    writeFileSync(join(repo, 'sub/tracked.env'), `KEY=${tracked}\n`);
    writeFileSync(join(repo, 'untracked.env'), `KEY=${generateKey('rep').rawKey}\n`);
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, stdio: 'ignore' });
    git('init', '-q');
    git('add', 'sub/tracked.env');
    // From a subfolder too: the whole repository is scanned, paths relative to here.
    const result = await runCli(['scan'], { cwd: join(repo, 'sub') });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe(`tracked.env:1: ${tracked.slice(0, 8)}…${tracked.slice(-6)}\n`);
  });

  it('outside a git repository and without a path, exits 2 naming the fix', async () => {
    const elsewhere = tempDir('nogit');
    const result = await runCli(['scan'], { cwd: elsewhere });
    rmSync(elsewhere, { recursive: true, force: true });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^keyward scan: .*not a git repository.*`keyward scan \.`.*\n$/);
  });

  it('skips a file over --max-size and says so', async () => {
    const result = await runCli(['scan', 'tree/big.log', '--max-size', '1'], { cwd: root });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('skipped tree/big.log (over 1 MiB');
  });
});

describe('scanText', () => {
  it('finds a key glued to other text, at the very start and end, on the right line', () => {
    const a = generateKey('rep').rawKey;
    const b = generateKey('zz').rawKey;
    const c = generateKey('abcdefghijklmnop').rawKey;
    const found = scanText(`${a}\n\nxx${b}\nfoo_${c}`);
    expect(found.map((f) => f.line)).toEqual([1, 3, 4]);
    expect(found.map((f) => f.masked)).toEqual(
      [a, b, c].map((k) => `${k.slice(0, k.indexOf('_') + 5)}…${k.slice(-6)}`),
    );
  });

  it('ignores a key with one more body character, or with its checksum broken', () => {
    const { rawKey } = generateKey('rep');
    expect(scanText(`${rawKey}x`)).toEqual([]);
    expect(scanText(lookAlike('rep'))).toEqual([]);
    expect(scanText(rawKey.toUpperCase())).toEqual([]);
  });
});
