import { generateKey, keyChecksum } from '@keyward/core';
import { describe, expect, it } from 'vitest';
import { redisReachable } from '../../../test/support/services.js';
import { REDIS_URL, randomId, runCli } from './support.js';

const redis = await redisReachable();
const commands = ['migrate', 'create', 'list', 'revoke', 'roll', 'verify', 'scan', 'pattern'];
/** A store that is never reached: usage errors come first. */
const env = { KEYWARD_STORE: 'redis', REDIS_URL: 'redis://127.0.0.1:1' };
const oneLine = /^keyward( \w+)?: [^\n]+\n$/;

describe('keyward usage', () => {
  it('--help on every command prints its usage on stdout, exit 0, without touching a store', async () => {
    const results = await Promise.all(commands.map((name) => runCli([name, '--help'], { env })));
    results.forEach((result, i) => {
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(new RegExp(`^Usage: keyward ${commands[i]}`));
    });
    const main = await runCli(['--help']);
    expect(main).toMatchObject({ code: 0, stderr: '' });
    for (const name of commands) expect(main.stdout).toContain(`  ${name} `);
    expect(main.stdout).toContain(
      '0 success, 1 refused or found, 2 usage error, 3 store unavailable',
    );
  });

  it.each([
    [[], 'no command'],
    [['frobnicate'], 'unknown command'],
    [['create', '--name', 'n'], 'needs --owner'],
    [['create', '--owner', 'o'], 'needs --name'],
    [['create', '--owner', 'o', '--name', 'n', '--colour', 'red'], "Unknown option '--colour'"],
    [
      ['create', '--owner', 'o', '--name', 'n', '--expires-in', '30 days'],
      '--expires-in must be a duration from 1m to 3650d',
    ],
    [
      ['create', '--owner', 'o', '--name', 'n', '--expires-in', '10s'],
      '--expires-in must be a duration',
    ],
    [['roll', '--owner', 'o', 'key_1', '--grace', '8d'], '--grace must be a duration from 0 to 7d'],
    [['roll', '--owner', 'o'], 'needs exactly one key id'],
    [['revoke', '--owner', 'o', 'key_1', 'key_2'], 'needs exactly one key id'],
    [['list', '--owner', 'o', '--store', 'memory'], 'the memory store lives inside one process'],
    [['list', '--owner', 'o', '--store', 'mysql'], 'must be one of pglite, postgres, redis'],
    [['list', '--owner', 'o', '--prefix', 'Bad'], 'KEYWARD_PREFIX (or --prefix) must match'],
    [['scan', '--max-size', 'lots'], '--max-size must be a positive number'],
    [['pattern', '--prefix', '1x'], '--prefix must match'],
  ])('%j exits 2 with one line naming the fix (%s)', async (args, expected) => {
    const result = await runCli(args as string[], { env });
    expect(result.code).toBe(2);
    if (args.length === 0) {
      expect(result.stdout).toMatch(/^Usage: keyward <command>/);
      return;
    }
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(oneLine);
    expect(result.stderr).toContain(expected);
  });

  it('verify refuses a key on the command line without repeating it, and wants exactly one on stdin', async () => {
    const { rawKey } = generateKey();
    const onCommandLine = await runCli(['verify', rawKey], { env });
    expect(onCommandLine).toMatchObject({ code: 2, stdout: '' });
    expect(onCommandLine.stderr).toMatch(oneLine);
    expect(onCommandLine.stderr).toContain('never from the command line');
    expect(onCommandLine.stderr).not.toContain(rawKey);

    const empty = await runCli(['verify'], { env, input: '\n' });
    expect(empty).toMatchObject({ code: 2, stdout: '' });
    expect(empty.stderr).toContain('verify got no key on stdin');
    const two = await runCli(['verify'], { env, input: `${rawKey}\n${rawKey}\n` });
    expect(two).toMatchObject({ code: 2, stdout: '' });
    expect(two.stderr).toContain('got 2 lines');
    expect(two.stderr).not.toContain(rawKey);
  });

  it.skipIf(!redis)('a field the key service refuses is a usage error too (exit 2)', async () => {
    const result = await runCli(['create', '--owner', randomId('cli'), '--name', 'x'.repeat(101)], {
      env: { KEYWARD_STORE: 'redis', REDIS_URL },
    });
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toBe('keyward create: `name` must be at most 100 characters.\n');
  });

  it('pattern prints a regex that matches a key as group 1, and the checksum rule with a test vector', async () => {
    const result = await runCli(['pattern', '--prefix', 'acme', '--json']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const spec = JSON.parse(result.stdout) as {
      regex: string;
      anyPrefixRegex: string;
      secretFormat: string;
      checksum: { testVector: { checksum: string } };
    };
    const { rawKey } = generateKey('acme');
    expect(new RegExp(spec.regex).exec(`token=${rawKey};`)?.[1]).toBe(rawKey);
    expect(new RegExp(spec.anyPrefixRegex).exec(`"${rawKey}"`)?.[1]).toBe(rawKey);
    expect(new RegExp(spec.regex).exec(`x${rawKey}`)).toBeNull();
    expect(spec.checksum.testVector.checksum).toBe(
      keyChecksum('acme', '0'.repeat(12), '0'.repeat(32)),
    );
    const text = await runCli(['pattern']);
    expect(text.stdout).toContain('secret format:  rep_[0-9A-Za-z]{50}');
    expect(text.stdout).toContain('CRC-32');
  });
});
