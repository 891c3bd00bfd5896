import { CliError, EXIT, oneLine } from './errors.js';
import type { CliIo, Command } from './io.js';

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  migrate: {
    summary: 'create or upgrade the store (idempotent)',
    load: async () => (await import('./commands/migrate.js')).migrate,
  },
  create: {
    summary: 'create a key; prints the raw key',
    load: async () => (await import('./commands/create.js')).create,
  },
  list: {
    summary: "an account's keys, masked",
    load: async () => (await import('./commands/list.js')).list,
  },
  revoke: {
    summary: 'revoke a key (--cascade: and the keys it made)',
    load: async () => (await import('./commands/revoke.js')).revoke,
  },
  roll: {
    summary: 'replace a key; prints the new raw key',
    load: async () => (await import('./commands/roll.js')).roll,
  },
  verify: {
    summary: 'check a key read from stdin',
    load: async () => (await import('./commands/verify.js')).verify,
  },
  scan: {
    summary: 'find leaked keys in files (no store needed)',
    load: async () => (await import('./commands/scan.js')).scan,
  },
  pattern: {
    summary: 'the regex and checksum rule for secret scanners',
    load: async () => (await import('./commands/pattern.js')).pattern,
  },
};

export const mainHelp = `Usage: keyward <command> [flags]

${Object.entries(commands)
  .map(([name, { summary }]) => `  ${name.padEnd(8)} ${summary}`)
  .join('\n')}

Each command takes --help. The store comes from KEYWARD_STORE (pglite, postgres, redis),
DATABASE_URL, REDIS_URL and KEYWARD_DATA_DIR, as for the examples, or from flags of the
same names (--store, --database-url, --redis-url, --data-dir).

Exit codes: 0 success, 1 refused or found, 2 usage error, 3 store unavailable.`;

/**
 * Runs one command line (without `node` and the script), writing through `io`; resolves
 * to the exit code. Errors are reported on stderr in one line; a raw key never is.
 */
export async function run(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(`${mainHelp}\n`);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    io.err(
      `keyward: unknown command ${JSON.stringify(name)}: use one of ${Object.keys(commands).join(', ')}; see \`keyward --help\`.`,
    );
    return EXIT.usage;
  }
  try {
    return await (await command.load())(rest, io);
  } catch (error) {
    if (error instanceof CliError) {
      io.err(`keyward ${name}: ${error.message}`);
      return error.exitCode;
    }
    // Not one of ours: report its message alone, never a stack.
    io.err(
      `keyward ${name}: unexpected error: ${oneLine(error instanceof Error ? error.message : String(error))} (please report it).`,
    );
    return EXIT.refused;
  }
}
