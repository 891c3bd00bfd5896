/**
 * `service.ready()` and `onError` on a Kysely store set up wrong, for each engine's test
 * file. Not shipped (see tsconfig.build.json).
 */
import { createKeyService, generateKey, StoreMisconfiguredError } from '@keyward/core';
import { CHEAP_ARGON2 } from '@keyward/testing';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { kyselyStore } from '../src/kysely-store.js';
import type { AnyKysely } from '../src/table.js';

const suffix = () => Math.random().toString(36).slice(2, 10);

export function describeReadiness(name: string, engine: { db(): AnyKysely; table: string }): void {
  describe(`${name}: readiness`, () => {
    const extraTables: string[] = [];
    afterAll(async () => {
      for (const extra of extraTables) {
        await engine.db().schema.dropTable(extra).ifExists().execute();
      }
    });

    it('ready() resolves on a migrated table', async () => {
      const service = createKeyService({
        store: kyselyStore(engine.db(), { table: engine.table }),
      });
      await expect(service.ready()).resolves.toBeUndefined();
      await service.close();
    });

    it('ready() rejects on a missing table, naming the table and the migrate call', async () => {
      const table = `keyward_missing_${suffix()}`;
      const service = createKeyService({ store: kyselyStore(engine.db(), { table }) });
      const failure = service.ready();
      await expect(failure).rejects.toBeInstanceOf(StoreMisconfiguredError);
      await expect(failure).rejects.toMatchObject({
        code: 'store_misconfigured',
        message: `keyward: table "${table}" does not exist; run migrate(db, { table: "${table}" }) first (or pass the table option the store uses).`,
      });
      await service.close();
    });

    it('ready() rejects on a table without the columns keyward needs', async () => {
      const table = `keyward_bare_${suffix()}`;
      extraTables.push(table);
      await sql`create table ${sql.table(table)} (id text primary key)`.execute(engine.db());
      const service = createKeyService({ store: kyselyStore(engine.db(), { table }) });
      await expect(service.ready()).rejects.toThrow(
        new RegExp(`table "${table}" lacks a column .*migrate\\(db, \\{ table: "${table}" \\}\\)`),
      );
      await service.close();
    });

    it('at request time, a missing table still answers 503 and reaches onError with the same message', async () => {
      const table = `keyward_missing_${suffix()}`;
      const errors: unknown[] = [];
      const service = createKeyService({
        store: kyselyStore(engine.db(), { table }),
        argon2: CHEAP_ARGON2,
        onError: (error) => errors.push(error),
      });
      await expect(service.verify(generateKey().rawKey)).rejects.toMatchObject({
        code: 'service_unavailable',
      });
      await expect(service.create('acct_1', 'k')).rejects.toMatchObject({
        code: 'service_unavailable',
      });
      expect(errors).toHaveLength(2);
      for (const error of errors) {
        expect(error).toBeInstanceOf(StoreMisconfiguredError);
        expect((error as Error).message).toMatch(
          new RegExp(
            `table "${table}" does not exist; run migrate\\(db, \\{ table: "${table}" \\}\\)`,
          ),
        );
      }
      await service.close();
    });
  });
}
