#!/usr/bin/env node
import { run } from './cli.js';

const code = await run(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (line) => process.stderr.write(`${line}\n`),
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
});
// Exit once stdout is flushed (a pipe may still hold the raw key), whatever handle a driver
// left open.
process.stdout.write('', () => process.exit(code));
