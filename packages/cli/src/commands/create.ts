import { keyToJson } from '@keyward/core';
import { parseCommand, required } from '../args.js';
import { readStoreConfig, storeHelp, storeOptions } from '../config.js';
import { parseDuration } from '../duration.js';
import { EXIT, usageError } from '../errors.js';
import { type Command, help } from '../io.js';
import { withService } from '../session.js';

export const createHelp = `Usage: keyward create --owner <id> --name <name> [--expires-in 30d] [--scope s]...
       [--rate-limit 100/60s] [--credits 1000 [--refill 1000/month] [--strict-credits]] [--json]

Creates a key for an account and prints the raw key alone on stdout: the only time it is
shown. Store it now (a secret manager, an env file); keyward keeps only its hash.

  --owner <id>            the account that owns the key (your app's ownerId)
  --name <name>           a label for the key, e.g. "Production server"
  --expires-in <duration> refused from then on: 30d, 12h, 90m, 3600 (seconds); 60 s to
                          10 years (default: never)
  --scope <scope>         what the key may do; repeat for several (default: *, everything)
  --rate-limit <n>/<d>    at most n requests per window of d (1s to 1d): 100/60s, 5000/1h
  --credits <n>           a balance each request spends (its route's cost)
  --refill <n>/<period>   set the balance to n at 00:00 UTC of each day or month:
                          1000/day, 50000/month
  --strict-credits        one store call per request, for a balance that is exact
  --json                  print the created key as JSON (as POST /keys answers) instead

${storeHelp}`;

const options = {
  ...storeOptions,
  owner: { type: 'string' },
  name: { type: 'string' },
  'expires-in': { type: 'string' },
  scope: { type: 'string', multiple: true },
  'rate-limit': { type: 'string' },
  credits: { type: 'string' },
  refill: { type: 'string' },
  'strict-credits': { type: 'boolean' },
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
  const rateLimit =
    values['rate-limit'] === undefined ? undefined : parseRateLimitFlag(values['rate-limit']);
  const credits = creditsFlags(values.credits, values.refill, values['strict-credits']);
  const config = readStoreConfig(values, io.env);
  const created = await withService(config, io.err, ({ service }) =>
    service.create(owner, name, {
      ...(expiresIn === undefined ? {} : { expiresIn }),
      ...(values.scope ? { scopes: values.scope } : {}),
      ...(rateLimit === undefined ? {} : { rateLimit }),
      ...(credits === undefined ? {} : { credits }),
    }),
  );
  io.out(values.json ? `${JSON.stringify(keyToJson(created), null, 2)}\n` : `${created.rawKey}\n`);
  return EXIT.ok;
};

/** `100/60s`: a limit and a window (a duration, 1 s to 1 day). The service checks the limit. */
function parseRateLimitFlag(value: string): { limit: number; windowSec: number } {
  const [limit, window, extra] = value.split('/');
  if (!limit || !window || extra !== undefined || !/^\d{1,7}$/.test(limit)) {
    throw usageError(
      `--rate-limit must read <limit>/<window>, such as 100/60s; got ${JSON.stringify(value)}.`,
    );
  }
  return {
    limit: Number(limit),
    windowSec: parseDuration('--rate-limit window', window, { min: 1, max: 86_400 }),
  };
}

/** `--credits`, with `--refill <amount>/<day|month>` and `--strict-credits`. */
function creditsFlags(
  credits: string | undefined,
  refill: string | undefined,
  strict: boolean | undefined,
):
  | { remaining: number; refill: { amount: number; every: string } | null; strict: boolean }
  | undefined {
  if (credits === undefined) {
    if (refill !== undefined || strict)
      throw usageError('--refill and --strict-credits need --credits.');
    return undefined;
  }
  if (!/^\d{1,10}$/.test(credits)) {
    throw usageError(`--credits must be a whole number; got ${JSON.stringify(credits)}.`);
  }
  let parsed: { amount: number; every: string } | null = null;
  if (refill !== undefined) {
    const match = /^(\d{1,10})\/(day|month)$/.exec(refill);
    if (!match) {
      throw usageError(
        `--refill must read <amount>/day or <amount>/month; got ${JSON.stringify(refill)}.`,
      );
    }
    parsed = { amount: Number(match[1]), every: match[2] as string };
  }
  return { remaining: Number(credits), refill: parsed, strict: strict === true };
}
