import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { deleteNamespace } from '../../../test/support/redis-dump.js';
import { REDIS_URL, redisReachable } from '../../../test/support/services.js';
import { defineScript, runScript, runScripts } from '../src/scripts.js';
import { countCommands, randomNamespace } from './test-support.js';

const reachable = await redisReachable();
const client = reachable ? new Redis(REDIS_URL) : null;
const namespace = randomNamespace();
await client?.ping();
afterAll(async () => {
  if (!client) return;
  await deleteNamespace(client, namespace);
  await client.quit();
});

// A script the server cannot have cached yet: its text is new to this run.
const freshScript = () =>
  defineScript(`-- ${randomUUID()}\nredis.call('SET', KEYS[1], ARGV[1])\nreturn ARGV[1]`);

it.skipIf(!client)('runScript() falls back to EVAL when the server lacks the script', async () => {
  if (!client) return;
  const script = freshScript();
  const key = `${namespace}:single`;
  const sent = await countCommands(client, async () => {
    expect(await runScript(client, script, [key], ['one'])).toBe('one');
  });
  expect(sent).toEqual(['evalsha', 'eval']);
  // Cached now: EVALSHA alone.
  expect(await countCommands(client, () => runScript(client, script, [key], ['two']))).toEqual([
    'evalsha',
  ]);
  expect(await client.get(key)).toBe('two');
});

it.skipIf(!client)(
  'runScripts() re-sends as EVAL every pipelined call that met NOSCRIPT',
  async () => {
    if (!client) return;
    const script = freshScript();
    const calls = [1, 2, 3].map((i) => ({ keys: [`${namespace}:many:${i}`], args: [`v${i}`] }));
    await runScripts(client, script, calls);
    expect(await client.mget(calls.map((c) => c.keys[0] ?? ''))).toEqual(['v1', 'v2', 'v3']);
  },
);

it.skipIf(!client)('runScripts() rethrows an error other than NOSCRIPT', async () => {
  if (!client) return;
  const script = defineScript(`return redis.error_reply('BOOM ${randomUUID()}')`);
  await client.script('LOAD', script.lua);
  const calls = [
    { keys: [], args: [] },
    { keys: [], args: [] },
  ];
  await expect(runScripts(client, script, calls)).rejects.toThrow(/BOOM/);
});
