import { keyToJson } from '@keyward/core';
import { parseCommand, required } from '../args.js';
import { readStoreConfig, storeHelp, storeOptions } from '../config.js';
import { parseDuration } from '../duration.js';
import { EXIT } from '../errors.js';
import { type Command, help } from '../io.js';
import { withService } from '../session.js';
import { notFound, oneKeyId } from './revoke.js';

export const rollHelp = `Usage: keyward roll --owner <id> <keyId> [--grace 24h] [--json]

Replaces a key without downtime: makes a new key (same name, scopes, expiry) and prints its
raw key alone on stdout, the only time it is shown. The old key keeps working for the grace
period, then is refused. Exit 1 if the account holds no such key, or it has expired.

  --owner <id>        the account that owns the key
  --grace <duration>  how long the old key keeps working: 0 to 7d (default 24h)
  --json              print the new key as JSON (as POST /keys/:id/roll answers) instead

${storeHelp}`;

const options = {
  ...storeOptions,
  owner: { type: 'string' },
  grace: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const roll: Command = async (argv, io) => {
  const { values, positionals } = parseCommand('roll', argv, options);
  if (values.help) return help(io, rollHelp);
  const owner = required('roll', 'owner', values.owner, 'acct_42');
  const keyId = oneKeyId('roll', positionals);
  const grace =
    values.grace === undefined
      ? undefined
      : parseDuration('--grace', values.grace, { min: 0, max: 604_800 });
  const config = readStoreConfig(values, io.env);
  const rolled = await withService(config, io.err, ({ service }) =>
    service.roll(owner, keyId, grace === undefined ? {} : { expiresIn: grace }),
  );
  if (!rolled) throw notFound(owner, keyId, 'unexpired key');
  io.out(values.json ? `${JSON.stringify(keyToJson(rolled), null, 2)}\n` : `${rolled.rawKey}\n`);
  return EXIT.ok;
};
