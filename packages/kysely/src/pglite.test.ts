import { PGlite } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import { afterAll, beforeAll } from 'vitest';
import { describeKyselyStore, describePostgresBus, queryLog } from './engine-suites.js';
import { migrate } from './migrations.js';
import type { AnyKysely } from './table.js';

// One in-memory PGlite for the whole file: each new one takes seconds to start.
const log = queryLog();
let pglite: PGlite;
let db: AnyKysely;
const table = 'keyward_api_keys';

beforeAll(async () => {
  pglite = await PGlite.create();
  db = new Kysely({ dialect: new PGliteDialect(pglite), log: log.record });
  await migrate(db);
});
afterAll(async () => {
  await db?.destroy();
});

describeKyselyStore('PGlite', { db: () => db, table, log });
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
