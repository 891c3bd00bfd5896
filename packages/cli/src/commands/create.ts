import { keyToJson } from '@keyward/core';
import { parseCommand, required } from '../args.js';
import { readStoreConfig, storeHelp, storeOptions } from '../config.js';
import { parseDuration } from '../duration.js';
import { EXIT, usageError } from '../errors.js';
import { type Command, help } from '../io.js';
import { withService } from '../session.js';

export const createHelp = `Usage: keyward create --owner <id> --name <name> [--expires-in 30d] [--scope s]... [--json]

Creates a key for an account and prints the raw key alone on stdout: the only time it is
shown. Store it now (a secret manager, an env file); keyward keeps only its hash.

  --owner <id>            the account that owns the key (your app's ownerId)
  --name <name>           a label for the key, e.g. "Production server"
  --expires-in <duration> refused from then on: 30d, 12h, 90m, 3600 (seconds); 60 s to
                          10 years (default: never)
  --scope <scope>         what the key may do; repeat for several (default: *, everything)
  --json                  print the created key as JSON (as POST /keys answers) instead

${storeHelp}`;

const options = {
  ...storeOptions,
  owner: { type: 'string' },
  name: { type: 'string' },
  'expires-in': { type: 'string' },
  scope: { type: 'string', multiple: true },
  json: { type: 'boolean' },
} as const;

export const create: Command = async (argv, io) => {
  const { values, positionals } = parseCommand('create', argv, options);
  if (values.help) return help(io, createHelp);
  if (positionals.length > 0) {
    throw usageError('create takes flags only (--owner, --name); see `keyward create --help`.');
  }
  const owner = required('create', 'owner', values.owner, 'acct_42');
  const name = required('create', 'name', values.name, '"Production server"');
  const expiresIn =
    values['expires-in'] === undefined
      ? undefined
      : parseDuration('--expires-in', values['expires-in'], { min: 60, max: 315_360_000 });
  const config = readStoreConfig(values, io.env);
  const created = await withService(config, io.err, ({ service }) =>
    service.create(owner, name, {
      ...(expiresIn === undefined ? {} : { expiresIn }),
      ...(values.scope ? { scopes: values.scope } : {}),
    }),
  );
  io.out(values.json ? `${JSON.stringify(keyToJson(created), null, 2)}\n` : `${created.rawKey}\n`);
  return EXIT.ok;
};
