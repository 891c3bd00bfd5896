import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import type { InvalidKeyReason } from '@keyward/core';
import { parseCommand } from '../args.js';
import { readStoreConfig, storeHelp, storeOptions } from '../config.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { type CliIo, type Command, help } from '../io.js';
import { withService } from '../session.js';

export const verifyHelp = `Usage: keyward verify [--json] < key.txt

Reads one key from stdin (never from the command line, where shell history and process
lists would keep it) and checks it as your app would. Prints the owner and key id; exit 0
if the key is valid, 1 if it is refused (the reason goes to stderr). On a terminal, paste the
key and press Enter: it is not echoed. A check counts as a use (lastUsedAt).

  --json   print { ownerId, keyId, name, scopes, expiresAt } instead

${storeHelp}`;

const options = { ...storeOptions, json: { type: 'boolean' } } as const;

/** More than any key, so a file piped by mistake is refused instead of read whole. */
const MAX_INPUT_BYTES = 4096;

const reasons: Record<InvalidKeyReason, string> = {
  malformed: 'not a well-formed key (prefix, length or checksum; is --prefix your app’s?)',
  unknown_key: 'no such key on this store (revoked, or never issued here)',
  wrong_secret: 'the secret does not match the key it names',
  expired: 'the key has expired',
  too_many_failures: 'too many wrong secrets for this key lately; retry in a minute',
};

export const verify: Command = async (argv, io) => {
  const { values, positionals } = parseCommand('verify', argv, options);
  if (values.help) return help(io, verifyHelp);
  if (positionals.length > 0) {
    // The argument is not repeated: it may well be the key.
    throw usageError(
      'verify reads the key from stdin, never from the command line (shell history keeps it): e.g. `keyward verify < key.txt`.',
    );
  }
  const config = readStoreConfig(values, io.env);
  const rawKey = io.stdin.isTTY ? await promptHidden(io) : await readOneKey(io.stdin);
  const result = await withService(config, io.err, ({ service }) => service.verify(rawKey));
  if (!result.ok) throw new CliError(EXIT.refused, `refused: ${reasons[result.reason]}.`);
  const { key } = result;
  io.out(
    values.json
      ? `${JSON.stringify({ ownerId: key.ownerId, keyId: key.id, name: key.name, scopes: key.scopes, expiresAt: key.expiresAt?.toISOString() ?? null }, null, 2)}\n`
      : `owner ${key.ownerId}\nkey ${key.id}\n`,
  );
  return EXIT.ok;
};

async function readOneKey(stdin: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    if (text.length > MAX_INPUT_BYTES) {
      throw usageError(
        'verify reads one key from stdin, and got more than 4 KiB: pipe the key alone.',
      );
    }
  }
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (lines.length !== 1) {
    throw usageError(
      lines.length === 0
        ? 'verify got no key on stdin: pipe one in, e.g. `keyward verify < key.txt`.'
        : `verify reads one key from stdin, and got ${lines.length} lines: pipe one key alone.`,
    );
  }
  return lines[0] as string;
}

/** One line from the terminal, not echoed. */
function promptHidden(io: CliIo): Promise<string> {
  io.err('Paste the key, then press Enter (it is not shown):');
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() });
  const reader = createInterface({ input: io.stdin, output: silent, terminal: true });
  return new Promise((resolve) => {
    reader.once('line', (line) => {
      reader.close();
      resolve(line.trim());
    });
  });
}
