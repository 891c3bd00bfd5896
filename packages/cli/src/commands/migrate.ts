import { parseCommand } from '../args.js';
import { readStoreConfig, storeHelp, storeOptions } from '../config.js';
import { EXIT, usageError } from '../errors.js';
import { type Command, help } from '../io.js';
import { migrateStore } from '../session.js';

export const migrateHelp = `Usage: keyward migrate [store flags]

Creates the keyward table (Postgres, PGlite) or brings it up to date; on Redis, moves keys an
earlier version wrote to the current layout. Idempotent: safe to run on every deploy.

${storeHelp}`;

export const migrate: Command = async (argv, io) => {
  const { values, positionals } = parseCommand('migrate', argv, storeOptions);
  if (values.help) return help(io, migrateHelp);
  if (positionals.length > 0)
    throw usageError('migrate takes no arguments; see `keyward migrate --help`.');
  io.err(`keyward: ${await migrateStore(readStoreConfig(values, io.env))}`);
  return EXIT.ok;
};
