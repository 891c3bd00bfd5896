import type { PGlite } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import { afterAll, beforeAll } from 'vitest';
import { startPglite } from '../../../test/support/pglite.js';
import { migrate } from '../src/migrations.js';
import type { AnyKysely } from '../src/table.js';
import {
  describeKyselyStore,
  describePostgresBus,
  describePostgresLogBus,
  queryLog,
} from './engine-suites.js';
import { describeReadiness } from './readiness-suite.js';

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
describePostgresLogBus('PGlite', {
  db: () => db,
  connect: async () => ({
    connection: pglite,
    roundTrip: async () => {
      await pglite.query('select 1');
    },
  }),
});
