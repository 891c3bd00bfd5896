import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseCommand } from '../args.js';
import { EXIT, usageError } from '../errors.js';
import { type Command, help } from '../io.js';
import { scanText } from '../scanner.js';

export const scanHelp = `Usage: keyward scan [path]... [--max-size <MiB>]

Finds keyward keys in files: strings shaped like a key (any prefix) whose checksum holds,
so look-alikes are ignored and no store is needed. Prints file:line and the masked key for
each; exit 1 if any was found, 0 if none. Without a path, scans the files git tracks in the
current repository; a folder is scanned whole, except .git and node_modules.

  --max-size <MiB>   skip files larger than this, saying so on stderr (default 32)

As a pre-commit hook (.git/hooks/pre-commit):  npx keyward scan`;

const options = { 'max-size': { type: 'string' } } as const;

export const scan: Command = async (argv, io) => {
  const started = performance.now();
  const { values, positionals } = parseCommand('scan', argv, options);
  if (values.help) return help(io, scanHelp);
  const maxMiB = Number(values['max-size'] ?? 32);
  if (!(maxMiB > 0))
    throw usageError('--max-size must be a positive number of MiB, e.g. --max-size 64.');
  const maxBytes = maxMiB * 1024 * 1024;

  const files = positionals.length > 0 ? walk(positionals, io.cwd) : trackedFiles(io.cwd);
  let found = 0;
  let scanned = 0;
  let bytes = 0;
  const skipped: string[] = [];
  for (const file of files) {
    const content = readSmallFile(file, maxBytes);
    if (content === 'too-large') skipped.push(file);
    if (typeof content !== 'string') continue;
    scanned += 1;
    bytes += content.length;
    for (const finding of scanText(content)) {
      found += 1;
      io.out(`${relative(io.cwd, file) || file}:${finding.line}: ${finding.masked}\n`);
    }
  }
  for (const file of skipped) {
    io.err(
      `keyward scan: skipped ${relative(io.cwd, file)} (over ${maxMiB} MiB; raise --max-size to scan it)`,
    );
  }
  const ms = Math.round(performance.now() - started);
  const mib = (bytes / 1024 / 1024).toFixed(1);
  io.err(
    `keyward scan: ${found === 0 ? 'no key' : `${found} key${found === 1 ? '' : 's'}`} in ${scanned} files (${mib} MiB, ${ms} ms)${found > 0 ? ': revoke each one found (`keyward revoke`), then remove it from the file and its history' : ''}`,
  );
  return found > 0 ? EXIT.refused : EXIT.ok;
};

/** The files git tracks, from the repository's top; a usage error outside a repository. */
function trackedFiles(cwd: string): string[] {
  let top: string;
  let listing: string;
  try {
    top = execFileSync('git', ['rev-parse', '--show-toplevel'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    listing = execFileSync('git', ['ls-files', '-z'], {
      cwd: top,
      encoding: 'utf8',
      maxBuffer: 1 << 30,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    throw usageError(
      'scan without a path lists the files git tracks, and this is not a git repository (or git is missing): name the files or folders to scan, e.g. `keyward scan .`.',
    );
  }
  return listing
    .split('\0')
    .filter((name) => name !== '')
    .map((name) => join(top, name));
}

/** The files under each path; folders recursively, without .git and node_modules, and
 * without following symbolic links (which could lead out of the tree, or loop). */
function walk(paths: string[], cwd: string): string[] {
  const files: string[] = [];
  const visit = (path: string, named: boolean) => {
    let stat: ReturnType<typeof lstatSync>;
    try {
      stat = lstatSync(path);
    } catch {
      if (named)
        throw usageError(`scan: no such file or folder: ${JSON.stringify(relative(cwd, path))}.`);
      return;
    }
    if (stat.isDirectory()) {
      for (const entry of readdirSync(path)) {
        if (entry === '.git' || entry === 'node_modules') continue;
        visit(join(path, entry), false);
      }
    } else if (stat.isFile() || (named && stat.isSymbolicLink())) {
      files.push(path);
    }
  };
  for (const path of paths) visit(resolve(cwd, path), true);
  return files;
}

/**
 * The file as latin1 text (one char per byte: the fastest decoding, and keys are ASCII),
 * `'too-large'` past the limit, or `null` for what is not a readable regular file (a
 * tracked file deleted since, a submodule, a link to a folder). Binary files are scanned
 * too: a key compiled into a bundle or a database dump is leaked all the same, and the
 * checksum keeps their noise out.
 */
function readSmallFile(path: string, maxBytes: number): string | 'too-large' | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) return null;
    if (stat.size > maxBytes) return 'too-large';
    const buffer = Buffer.allocUnsafe(stat.size);
    let read = 0;
    while (read < stat.size) {
      const n = readSync(fd, buffer, read, stat.size - read, null);
      if (n === 0) break;
      read += n;
    }
    return buffer.toString('latin1', 0, read);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
