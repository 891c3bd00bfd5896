import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import { afterAll, beforeAll } from 'vitest';
import { describeKyselyStore, describePostgresBus, queryLog } from './engine-suites.js';
import { migrate } from '../src/migrations.js';
import { describeReadiness } from './readiness-suite.js';
import type { AnyKysely } from '../src/table.js';

// initdb dominates a new PGlite's start: seconds, many more on a loaded machine. The data dir
// of an empty cluster, cached under .data/ (git-ignored), loads in a fraction of that. The
// cache is only a shortcut: missing, or unreadable by this PGlite, it is rebuilt.
const template = new URL('../.data/pglite-empty-cluster.tar.gz', import.meta.url);

async function startPglite(): Promise<PGlite> {
  const cached = await readFile(template).catch(() => null);
  if (cached) {
    const loadDataDir = new Blob([cached], { type: 'application/x-gzip' });
    const pglite = await PGlite.create({ loadDataDir }).catch(() => null);
    if (pglite) return pglite;
  }
  const pglite = await PGlite.create();
  const dump = await pglite.dumpDataDir('gzip');
  await mkdir(new URL('.', template), { recursive: true });
  // Written aside then renamed, so a concurrent run never reads half a file.
  const partial = new URL(`${template.href}.${randomUUID()}`);
  await writeFile(partial, new Uint8Array(await dump.arrayBuffer()));
  await rename(partial, template);
  return pglite;
}

// One in-memory PGlite for the whole file.
const log = queryLog();
let pglite: PGlite;
let db: AnyKysely;
const table = 'keyward_api_keys';

beforeAll(async () => {
  pglite = await startPglite();
  db = new Kysely({ dialect: new PGliteDialect(pglite), log: log.record });
  await migrate(db);
});
afterAll(async () => {
  await db?.destroy();
});

describeKyselyStore('PGlite', { db: () => db, table, log });
describeReadiness('PGlite', { db: () => db, table });
// PGlite is a single session: its "connections" are that one session, whose notifications
// reach every callback registered with listen().
describePostgresBus('PGlite', {
  db: () => db,
  connect: async () => ({
    connection: pglite,
    roundTrip: async () => {
      await pglite.query('select 1');
    },
  }),
});
