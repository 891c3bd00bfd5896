/**
 * `pnpm soak`: each example app under a steady mix of valid, invalid and management
 * traffic for a while, counting every answer by status and code and watching the process
 * through its diagnostics window (KEYWARD_DIAGNOSTICS=1). It passes when every answer was
 * the expected one and heap and handles end where they started. Not part of `pnpm test`.
 *
 *   SOAK_SECONDS=60           traffic time per example
 *   SOAK_STORE=pglite         memory | pglite (in a temporary KEYWARD_DATA_DIR)
 *   SOAK_EXAMPLES=express,fastify
 *   SOAK_CONNECTIONS=8        keep-alive connections sending at once
 *   SOAK_SAMPLE_SECONDS=5     how often the process is sampled
 *
 * Exit code 1 on an unexpected answer or growth; the report says which.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type RunningExample, startExample } from '../test/support/example-process.js';
import { type Diagnostics, readDiagnostics, verdict } from './process.js';
import { drawAction, type Outcome, type SoakAccounts, soakClient } from './traffic.js';

const seconds = positive('SOAK_SECONDS', 60);
const connections = positive('SOAK_CONNECTIONS', 8);
const sampleSeconds = positive('SOAK_SAMPLE_SECONDS', 5);
const store = process.env.SOAK_STORE ?? 'pglite';
const frameworks = (process.env.SOAK_EXAMPLES ?? 'express,fastify').split(',').map((f) => f.trim());
/** The examples' default cap: the `full` account is filled to it. */
const CAP = 100;
const VALID_KEYS = 16;
const VICTIM_KEYS = 2;

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive whole number; got ${JSON.stringify(raw)}.`);
  }
  return value;
}

if (!['memory', 'pglite'].includes(store)) {
  throw new Error(`SOAK_STORE must be memory or pglite; got ${JSON.stringify(store)}.`);
}
for (const f of frameworks) {
  if (f !== 'express' && f !== 'fastify') throw new Error(`unknown example in SOAK_EXAMPLES: ${f}`);
}

const running = new Set<RunningExample>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void Promise.all([...running].map((app) => app.stop())).then(() => process.exit(130));
  });
}

interface SoakResult {
  framework: string;
  ok: boolean;
}

async function soak(framework: 'express' | 'fastify'): Promise<SoakResult> {
  const dataDir = await mkdtemp(join(tmpdir(), `keyward-soak-${framework}-`));
  const app = await startExample(
    framework,
    {
      KEYWARD_STORE: store,
      KEYWARD_DATA_DIR: dataDir,
      KEYWARD_DIAGNOSTICS: '1',
      DEMO_ACCOUNTS: 'soak, soakfull',
    },
    // Heap readings need gc(); a line per refused key is not worth keeping.
    { nodeArgs: ['--expose-gc'], maxOutput: 100_000 },
  );
  running.add(app);
  try {
    const { diagnosticsUrl } = app;
    if (!diagnosticsUrl) throw new Error('the example printed no diagnostics URL');
    const client = soakClient(app.url, connections);
    const setup: Outcome[] = [];
    const accounts = await makeAccounts(app, client, setup);
    const unexpectedSetup = setup.filter((o) => !o.expected);
    if (unexpectedSetup.length > 0) {
      throw new Error(`setup got unexpected answers: ${JSON.stringify(unexpectedSetup)}`);
    }

    const atStart = await readDiagnostics(diagnosticsUrl, { gc: true });
    const outcomes: Outcome[] = [];
    const samples: Diagnostics[] = [atStart];
    const startedAt = Date.now();
    const endsAt = startedAt + seconds * 1000;
    let n = 0;
    const worker = async () => {
      while (Date.now() < endsAt) {
        const i = n++;
        outcomes.push(...(await drawAction(Math.random()).run(client, accounts, i)));
      }
    };
    const sampler = async () => {
      while (Date.now() < endsAt) {
        await sleep(Math.min(sampleSeconds * 1000, Math.max(0, endsAt - Date.now())));
        if (Date.now() < endsAt) samples.push(await readDiagnostics(diagnosticsUrl));
      }
    };
    // The heap is compared from the end of warm-up on: the caches fill up to their bounds
    // first, which is growth by design.
    const warmUpMs = Math.min(10_000, (seconds * 1000) / 5);
    const baseline = (async () => {
      await sleep(warmUpMs);
      const reading = await readDiagnostics(diagnosticsUrl, { gc: true });
      samples.push(reading);
      return { reading, requests: outcomes.length };
    })();
    await Promise.all([...Array.from({ length: connections }, worker), sampler()]);
    const elapsedMs = Date.now() - startedAt;
    // The client's sockets go before the last reading, so it counts what the app holds on
    // its own, as at the start.
    client.close();
    await sleep(500);
    const atEnd = await readDiagnostics(diagnosticsUrl, { gc: true });
    samples.push(atEnd);
    const warm = await baseline;

    const result = verdict({
      atStart,
      baseline: warm.reading,
      atEnd,
      samples,
      requestsAfterBaseline: outcomes.length - warm.requests,
    });
    const unexpected = outcomes.filter((o) => !o.expected);
    printReport({ framework, elapsedMs, setup, outcomes, unexpected, result, atEnd });
    const exitCode = await app.stop();
    running.delete(app);
    if (exitCode !== 0) {
      console.log(`  the example exited with ${exitCode} on SIGTERM; its last words:`);
      console.log(app.tail(8));
    }
    return { framework, ok: unexpected.length === 0 && result.flat && exitCode === 0 };
  } finally {
    if (running.has(app)) {
      await app.stop();
      running.delete(app);
    }
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** The accounts the traffic needs, made over HTTP like any client would. */
async function makeAccounts(
  app: RunningExample,
  client: ReturnType<typeof soakClient>,
  setup: Outcome[],
): Promise<SoakAccounts> {
  const main = app.bootstrap.get('soak');
  const full = app.bootstrap.get('soakfull');
  if (!main || !full) throw new Error('the example printed no bootstrap keys');
  const create = async (withKey: string, name: string) => {
    const res = await client.send(
      'POST',
      '/v1/api-keys',
      { 'X-API-Key': withKey, 'Content-Type': 'application/json' },
      JSON.stringify({ name }),
    );
    setup.push({
      label: 'setup create',
      status: res.status,
      code: res.code,
      expected: res.status === 201,
      ms: res.ms,
    });
    return (res.json as { data?: { rawKey: string } }).data?.rawKey ?? '';
  };
  const valid: string[] = [];
  for (let i = 0; i < VALID_KEYS; i++) valid.push(await create(main, `valid ${i}`));
  const victims: string[] = [];
  for (let i = 0; i < VICTIM_KEYS; i++) victims.push(await create(main, `victim ${i}`));
  // The bootstrap key is the first of the full account's keys.
  for (let i = 1; i < CAP; i++) await create(full, `filler ${i}`);
  return { main, valid, victims, full };
}

function printReport(report: {
  framework: string;
  elapsedMs: number;
  setup: Outcome[];
  outcomes: Outcome[];
  unexpected: Outcome[];
  result: ReturnType<typeof verdict>;
  atEnd: Diagnostics;
}): void {
  const { outcomes, result } = report;
  const elapsed = report.elapsedMs / 1000;
  const latencies = outcomes.map((o) => o.ms).sort((a, b) => a - b);
  const at = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? NaN;
  const lines = [
    '',
    `examples/${report.framework} on ${store}: ${elapsed.toFixed(1)} s, ${connections} connections (load average now ${load()})`,
    `  setup: ${report.setup.length} creates (${CAP} keys in the full account, ${VALID_KEYS + VICTIM_KEYS} in the main one)`,
    `  requests: ${outcomes.length} (${Math.round(outcomes.length / elapsed)}/s); latency p50 ${at(50).toFixed(1)} ms, p99 ${at(99).toFixed(1)} ms, max ${at(100).toFixed(1)} ms`,
    '  answers:',
  ];
  const counts = new Map<string, { count: number; expected: boolean }>();
  for (const o of outcomes) {
    const row = `${o.label.padEnd(22)} ${String(o.status).padEnd(4)} ${o.code ?? ''}`;
    const entry = counts.get(row) ?? { count: 0, expected: o.expected };
    entry.count++;
    counts.set(row, entry);
  }
  for (const [row, { count, expected }] of [...counts].sort()) {
    lines.push(
      `    ${row.padEnd(50)} ${String(count).padStart(8)}${expected ? '' : '  UNEXPECTED'}`,
    );
  }
  lines.push(`  unexpected answers: ${report.unexpected.length}`);
  lines.push('  process (start of traffic → end of warm-up → end; max sampled):');
  for (const line of result.lines) lines.push(`    ${line}`);
  lines.push(`  key service at the end: ${JSON.stringify(report.atEnd.keyward)}`);
  lines.push(
    `  verdict: ${report.unexpected.length === 0 && result.flat ? 'PASS' : 'FAIL'}` +
      (result.problems.length > 0 ? ` (${result.problems.join('; ')})` : ''),
  );
  console.log(lines.join('\n'));
}

// Other work on the machine slows everything down: the load average says how much.
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
console.log(
  `keyward soak: ${frameworks.join(' and ')} on ${store}, ${seconds} s each, ${connections} connections (load average ${load()})`,
);
const results: SoakResult[] = [];
for (const framework of frameworks as Array<'express' | 'fastify'>) {
  results.push(await soak(framework));
}
const failed = results.filter((r) => !r.ok).map((r) => r.framework);
console.log(failed.length === 0 ? '\nsoak: PASS' : `\nsoak: FAIL (${failed.join(', ')})`);
process.exit(failed.length === 0 ? 0 : 1);
