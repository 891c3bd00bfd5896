import { parseCommand, required } from '../args.js';
import { readStoreConfig, storeHelp, storeOptions } from '../config.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { type Command, help } from '../io.js';
import { withService } from '../session.js';

export const revokeHelp = `Usage: keyward revoke --owner <id> <keyId> [--cascade]

Deletes a key for good. Apps sharing the store through a bus drop it at once: the CLI
publishes on the pub/sub channel (Postgres LISTEN/NOTIFY, Redis pub/sub) and appends to
the invalidation log (its Postgres table, its Redis Stream), under their default names.
Apps with no bus drop it within their cache TTL. Prints the revoked ids.
Exit 1 if the account holds no key with that id.

  --owner <id>   the account that owns the key
  --cascade      also revoke every key it created (over HTTP), transitively

${storeHelp}`;

const options = {
  ...storeOptions,
  owner: { type: 'string' },
  cascade: { type: 'boolean' },
} as const;

export const revoke: Command = async (argv, io) => {
  const { values, positionals } = parseCommand('revoke', argv, options);
  if (values.help) return help(io, revokeHelp);
  const owner = required('revoke', 'owner', values.owner, 'acct_42');
  const keyId = oneKeyId('revoke', positionals);
  const config = readStoreConfig(values, io.env);
  const revoked = await withService(config, io.err, async ({ service }) => {
    if (values.cascade) return service.revokeCascade(owner, keyId);
    return (await service.revoke(owner, keyId)) ? [keyId] : [];
  });
  if (revoked.length === 0) throw notFound(owner, keyId);
  io.out(revoked.map((id) => `${id}\n`).join(''));
  return EXIT.ok;
};

/** The one key id a command acts on. */
export function oneKeyId(command: string, positionals: string[]): string {
  const [keyId, ...rest] = positionals;
  if (keyId === undefined || rest.length > 0) {
    throw usageError(
      `${command} needs exactly one key id (key_…, as \`keyward list\` shows); see \`keyward ${command} --help\`.`,
    );
  }
  return keyId;
}

export function notFound(owner: string, keyId: string, what = 'key'): CliError {
  return new CliError(
    EXIT.refused,
    `account ${JSON.stringify(owner)} holds no ${what} ${JSON.stringify(keyId)}: check both with \`keyward list --owner <id>\`.`,
  );
}
