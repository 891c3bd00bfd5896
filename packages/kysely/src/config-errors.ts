import { StoreMisconfiguredError } from '@keyward/core';
import { DEFAULT_TABLE } from './table.js';

/**
 * Postgres errors no retry fixes, by SQLSTATE: the store is reachable but the table is
 * missing, lacks a column, or may not be read. Anything else (a refused connection, a
 * timeout, a server shutting down) is an outage.
 */
export function misconfiguration(error: unknown, table: string): StoreMisconfiguredError | null {
  if (typeof error !== 'object' || error === null) return null;
  const code = (error as { code?: unknown }).code;
  const migrateCall =
    table === DEFAULT_TABLE ? 'migrate(db)' : `migrate(db, { table: "${table}" })`;
  const fix = `run ${migrateCall} first (or pass the table option the store uses)`;
  const detail = error instanceof Error ? ` (${error.message})` : '';
  if (code === '42P01') {
    return new StoreMisconfiguredError(`keyward: table "${table}" does not exist; ${fix}.`, {
      cause: error,
    });
  }
  if (code === '42703') {
    return new StoreMisconfiguredError(
      `keyward: table "${table}" lacks a column keyward needs${detail}; it was not created by keyward's migration: ${fix}.`,
      { cause: error },
    );
  }
  if (code === '42501') {
    return new StoreMisconfiguredError(
      `keyward: the database user may not use table "${table}"${detail}; grant it SELECT, INSERT, UPDATE and DELETE on the table.`,
      { cause: error },
    );
  }
  return null;
}
