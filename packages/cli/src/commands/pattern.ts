import {
  BODY_LENGTH,
  CHECKSUM_LENGTH,
  DEFAULT_KEY_PREFIX,
  isValidKeyPrefix,
  keyChecksum,
  LOOKUP_LENGTH,
  SECRET_LENGTH,
} from '@keyward/core';
import { parseCommand } from '../args.js';
import { EXIT, usageError } from '../errors.js';
import { type Command, help } from '../io.js';

export const patternHelp = `Usage: keyward pattern [--prefix <prefix>] [--json]

Prints what a secret-scanning service (GitHub custom patterns, GitGuardian, TruffleHog…)
needs to recognise your app's keys: the regular expression, the boundaries around it, and
the checksum rule that tells a real key from a look-alike without any store.

  --prefix <prefix>   your app's key prefix (KEYWARD_PREFIX; default rep)
  --json              the same, as JSON`;

const options = { prefix: { type: 'string' }, json: { type: 'boolean' } } as const;

export const pattern: Command = async (argv, io) => {
  const { values, positionals } = parseCommand('pattern', argv, options);
  if (values.help) return help(io, patternHelp);
  if (positionals.length > 0)
    throw usageError('pattern takes no arguments; see `keyward pattern --help`.');
  const prefix = values.prefix ?? io.env.KEYWARD_PREFIX ?? DEFAULT_KEY_PREFIX;
  if (!isValidKeyPrefix(prefix)) {
    throw usageError(
      `--prefix must match [a-z][a-z0-9]{1,15}, as your app's prefix option; got ${JSON.stringify(prefix)}.`,
    );
  }
  const spec = describe(prefix);
  io.out(values.json ? `${JSON.stringify(spec, null, 2)}\n` : text(spec));
  return EXIT.ok;
};

function describe(prefix: string) {
  const secretFormat = `${prefix}_[0-9A-Za-z]{${BODY_LENGTH}}`;
  const before = '\\A|[^0-9A-Za-z]';
  const after = '\\z|[^0-9A-Za-z]';
  // A test vector split in two, so that this output is not itself a key a scanner flags.
  const lookup = '0'.repeat(LOOKUP_LENGTH);
  const secret = '0'.repeat(SECRET_LENGTH);
  return {
    prefix,
    secretFormat,
    beforeSecret: before,
    afterSecret: after,
    regex: `(?:^|[^0-9A-Za-z])(${secretFormat})(?:$|[^0-9A-Za-z])`,
    anyPrefixRegex: `(?:^|[^0-9A-Za-z])([a-z][a-z0-9]{1,15}_[0-9A-Za-z]{${BODY_LENGTH}})(?:$|[^0-9A-Za-z])`,
    checksum: {
      algorithm: 'CRC-32 (IEEE 802.3 polynomial, as zlib crc32), written in base62',
      input: `the key without its last ${CHECKSUM_LENGTH} characters: "${prefix}_" and the first ${LOOKUP_LENGTH + SECRET_LENGTH} body characters, as ASCII`,
      output: `the last ${CHECKSUM_LENGTH} characters of the key: the CRC as an unsigned integer in base62, alphabet 0-9A-Za-z, most significant digit first, left-padded with 0 to ${CHECKSUM_LENGTH} characters`,
      testVector: {
        input: `${prefix}_ + ${LOOKUP_LENGTH + SECRET_LENGTH} × "0"`,
        checksum: keyChecksum(prefix, lookup, secret),
      },
    },
  };
}

function text(spec: ReturnType<typeof describe>): string {
  return `keyward keys with prefix "${spec.prefix}"

secret format:  ${spec.secretFormat}
before secret:  ${spec.beforeSecret}
after secret:   ${spec.afterSecret}
one regex:      ${spec.regex}   (the key is group 1)
any prefix:     ${spec.anyPrefixRegex}

checksum (tells a real key from a look-alike, offline):
  ${spec.checksum.algorithm}
  input:   ${spec.checksum.input}
  output:  ${spec.checksum.output}
  test:    ${spec.checksum.testVector.input} → ${spec.checksum.testVector.checksum}
`;
}
