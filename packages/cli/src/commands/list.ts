import { type ApiKey, keyToJson } from '@keyward/core';
import { parseCommand, required } from '../args.js';
import { readStoreConfig, storeHelp, storeOptions } from '../config.js';
import { EXIT, usageError } from '../errors.js';
import { type Command, help } from '../io.js';
import { masked } from '../json.js';
import { withService } from '../session.js';

export const listHelp = `Usage: keyward list --owner <id> [--json]

Lists an account's keys, newest first, expired ones too: id, name, the key masked (its first
and last characters), scopes, dates, rate limit and credits, and for a key quarantined
after a leak, when and who reported it. Never a secret.

  --owner <id>   the account
  --json         print the keys as a JSON array (as GET /keys answers) instead

${storeHelp}`;

const options = { ...storeOptions, owner: { type: 'string' }, json: { type: 'boolean' } } as const;

export const list: Command = async (argv, io) => {
  const { values, positionals } = parseCommand('list', argv, options);
  if (values.help) return help(io, listHelp);
  if (positionals.length > 0)
    throw usageError('list takes --owner only; see `keyward list --help`.');
  const owner = required('list', 'owner', values.owner, 'acct_42');
  const config = readStoreConfig(values, io.env);
  const keys = await withService(config, io.err, ({ service }) => service.list(owner));
  if (values.json) {
    io.out(`${JSON.stringify(keys.map(keyToJson), null, 2)}\n`);
  } else if (keys.length === 0) {
    io.err(`keyward: account ${JSON.stringify(owner)} holds no keys.`);
  } else {
    io.out(table(keys, Date.now()));
  }
  return EXIT.ok;
};

function table(keys: ApiKey[], now: number): string {
  const rows = [
    ['ID', 'NAME', 'KEY', 'SCOPES', 'CREATED', 'EXPIRES', 'LAST USED', 'LIMIT', 'CREDITS'],
    ...keys.map((key) => [
      key.id,
      printable(key.name),
      masked(key),
      key.scopes.join(','),
      date(key.createdAt),
      (key.expiresAt === null
        ? 'never'
        : `${date(key.expiresAt)}${key.expiresAt.getTime() <= now ? ' (expired)' : ''}`) +
        // Quarantined after a confirmed leak: the expiry shown is the shortened one.
        (key.leakedAt === null ? '' : ` (leaked ${date(key.leakedAt)}, ${key.leakSource})`),
      key.lastUsedAt === null ? 'never' : date(key.lastUsedAt),
      key.rateLimit ? `${key.rateLimit.limit}/${key.rateLimit.windowSec}s` : '-',
      key.credits
        ? `${key.credits.remaining}${key.credits.refill ? ` (${key.credits.refill.amount}/${key.credits.refill.every})` : ''}${key.credits.strict ? ' strict' : ''}`
        : '-',
    ]),
  ];
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => width(row[column]))));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell + ' '.repeat((widths?.[column] ?? 0) - width(cell)))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

const width = (cell: string | undefined) => [...(cell ?? '')].length;
const date = (value: Date) => `${value.toISOString().slice(0, 16).replace('T', ' ')}Z`;
/** The service refuses control characters in names, but a store may hold names an older
 * version wrote: none reaches the terminal. */
const printable = (name: string) => name.replace(/\p{Cc}/gu, '?');
