// Lints what each package publishes: builds, packs every publishable package as
// `pnpm publish` would, then runs publint (--strict: warnings fail too) and
// @arethetypeswrong/cli on each tarball, and prints each tarball's size.
// attw runs with `--profile esm-only`: the packages are ESM only by design, so the two
// resolutions that profile ignores (node10, which cannot read `exports`, and TypeScript's
// "CJS importing ESM") can only ever report that. A CommonJS user on Node 20.19+ or 22.12+
// can require() them; scripts/consumer-test.mjs checks that.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packAll, root, run } from './pack-packages.mjs';

run('pnpm', ['build'], { cwd: root });
const destination = mkdtempSync(join(tmpdir(), 'keyward-pack-'));
const bin = (name) => join(root, 'node_modules/.bin', name);
try {
  const sizes = [];
  for (const pkg of packAll(destination)) {
    console.log(`\n== ${pkg.name}`);
    run(bin('publint'), ['run', '--strict', pkg.tarball]);
    run(bin('attw'), [pkg.tarball, '--profile', 'esm-only', '--format', 'ascii']);
    const listing = execFileSync('tar', ['-tvzf', pkg.tarball], { encoding: 'utf8' });
    const unpacked = listing
      .trim()
      .split('\n')
      .reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[2]), 0);
    sizes.push(
      `${pkg.name}: ${(statSync(pkg.tarball).size / 1024).toFixed(1)} kB packed, ${(unpacked / 1024).toFixed(1)} kB unpacked, ${listing.trim().split('\n').length} files`,
    );
  }
  console.log(`\ncheck-packages: publint and attw pass on every package\n${sizes.join('\n')}`);
} finally {
  rmSync(destination, { recursive: true, force: true });
}
