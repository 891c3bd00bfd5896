import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';

// A new PGlite spends seconds in initdb (over ten on a loaded machine); loading the data dir
// of an empty cluster takes under one. The dump is cached under .data/ (git-ignored) and is
// only a shortcut: when it is missing or this PGlite cannot read it, it is made again.
const cache = new URL('../../.data/pglite-empty-cluster.tar.gz', import.meta.url);

/** A new PGlite with an empty cluster: in memory, or in `dataDir` (an empty directory),
 * for example to hand an example app a cluster it does not have to create. */
export async function startPglite(dataDir?: string): Promise<PGlite> {
  const cached = await readFile(cache).catch(() => null);
  if (cached) {
    const loadDataDir = new Blob([cached], { type: 'application/x-gzip' });
    const pglite = await PGlite.create({ dataDir, loadDataDir }).catch(() => null);
    if (pglite) return pglite;
  }
  const pglite = await PGlite.create({ dataDir });
  const dump = await pglite.dumpDataDir('gzip');
  await mkdir(new URL('.', cache), { recursive: true });
  // Written aside and renamed, so that a run starting meanwhile never reads half a file.
  const partial = new URL(`${cache.href}.${randomUUID()}`);
  await writeFile(partial, new Uint8Array(await dump.arrayBuffer()));
  await rename(partial, cache);
  return pglite;
}
