// Packs every publishable workspace package with `pnpm pack`, which is what `pnpm publish`
// uploads: `workspace:` and `catalog:` ranges rewritten, `publishConfig` applied.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const root = new URL('..', import.meta.url).pathname;

/** The workspace packages that are published (not private), with their folders. */
export function publishablePackages() {
  const dir = join(root, 'packages');
  return readdirSync(dir)
    .map((name) => join(dir, name))
    .map((path) => ({
      path,
      manifest: JSON.parse(readFileSync(join(path, 'package.json'), 'utf8')),
    }))
    .filter(({ manifest }) => !manifest.private)
    .map(({ path, manifest }) => ({ name: manifest.name, path }));
}

/** Packs each package into `destination`; returns `{ name, path, tarball }` for each. */
export function packAll(destination) {
  return publishablePackages().map((pkg) => {
    const out = execFileSync('pnpm', ['pack', '--json', '--pack-destination', destination], {
      cwd: pkg.path,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return { ...pkg, tarball: JSON.parse(out).filename };
  });
}

/** The default catalog of pnpm-workspace.yaml (`name: version` lines under `catalog:`). */
export function catalog() {
  const versions = {};
  let inCatalog = false;
  for (const line of readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8').split('\n')) {
    if (/^\S/.test(line)) inCatalog = line.trim() === 'catalog:';
    const entry = inCatalog && line.match(/^\s+("?)([^"#:\s]+)\1:\s*(\S+)/);
    if (entry) versions[entry[2]] = entry[3];
  }
  return versions;
}

/** Runs a command, its output shown, and throws if it fails. */
export function run(command, args, options = {}) {
  execFileSync(command, args, { stdio: ['ignore', 'inherit', 'inherit'], ...options });
}
