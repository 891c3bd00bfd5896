import { type ParseArgsConfig, parseArgs } from 'node:util';
import { usageError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;
const helpOption = { help: { type: 'boolean', short: 'h' } } as const;
type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: O & typeof helpOption;
    allowPositionals: true;
    strict: true;
  }>
>;

/**
 * util.parseArgs, strict, with its errors turned into usage errors that point at the
 * command's --help. Its messages quote the unknown flag, never a value.
 */
export function parseCommand<O extends Options>(
  command: string,
  argv: string[],
  options: O,
): Parsed<O> {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, ...helpOption },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw usageError(`${message.replace(/\.$/, '')}; see \`keyward ${command} --help\`.`);
  }
}

/** A flag the command cannot do without. */
export function required(
  command: string,
  flag: string,
  value: string | undefined,
  example: string,
) {
  if (value === undefined || value === '') {
    throw usageError(
      `${command} needs --${flag} (e.g. --${flag} ${example}); see \`keyward ${command} --help\`.`,
    );
  }
  return value;
}
