/** The example process as the soak sees it through GET /__diagnostics, and whether it stayed
 * flat. */

export interface Diagnostics {
  uptimeMs: number;
  /** Whether garbage was collected before this reading. */
  collected: boolean;
  memory: NodeJS.MemoryUsage;
  resources: { total: number; byKind: Record<string, number> };
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  keyward: Record<string, number>;
}

export async function readDiagnostics(url: string, options: { gc?: boolean } = {}) {
  const res = await fetch(options.gc ? `${url}?gc=1` : url);
  if (!res.ok) throw new Error(`diagnostics answered ${res.status}`);
  const reading = (await res.json()) as Diagnostics;
  if (options.gc && !reading.collected) {
    throw new Error('the example cannot collect garbage: is it running with --expose-gc?');
  }
  return reading;
}

/** Heap growth after warm-up that still counts as flat: the heap after a full collection
 * wobbles by a few MB with what happens to be in flight. */
const HEAP_SLACK_BYTES = 8 * 1024 * 1024;
/** Handles the app may hold at the end beyond those at the start (a timer, a socket closing). */
const HANDLE_SLACK = 2;

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

export function verdict(input: {
  atStart: Diagnostics;
  baseline: Diagnostics;
  atEnd: Diagnostics;
  samples: Diagnostics[];
  requestsAfterBaseline: number;
}) {
  const { atStart, baseline, atEnd, samples } = input;
  const max = (read: (d: Diagnostics) => number) => Math.max(...samples.map(read));
  const heapGrowth = atEnd.memory.heapUsed - baseline.memory.heapUsed;
  const perThousand = (heapGrowth / Math.max(1, input.requestsAfterBaseline)) * 1000;
  const lines = [
    `heap used after GC   ${mb(atStart.memory.heapUsed)} → ${mb(baseline.memory.heapUsed)} → ${mb(atEnd.memory.heapUsed)}; max ${mb(max((d) => d.memory.heapUsed))}` +
      ` (after warm-up: ${heapGrowth >= 0 ? '+' : ''}${mb(heapGrowth)}, ${Math.round(perThousand)} B per 1000 requests)`,
    `rss                  ${mb(atStart.memory.rss)} → ${mb(baseline.memory.rss)} → ${mb(atEnd.memory.rss)}; max ${mb(max((d) => d.memory.rss))}`,
    `active handles       ${atStart.resources.total} → ${baseline.resources.total} → ${atEnd.resources.total}; max ${max((d) => d.resources.total)}` +
      ` (at the end: ${Object.entries(atEnd.resources.byKind)
        .map(([kind, count]) => `${kind} ${count}`)
        .join(', ')})`,
    `event-loop delay     p99 per ${samples.length - 1} windows: max ${max((d) => d.eventLoopDelayMs.p99).toFixed(1)} ms; longest stall ${max((d) => d.eventLoopDelayMs.max).toFixed(1)} ms`,
  ];
  const problems: string[] = [];
  if (heapGrowth > HEAP_SLACK_BYTES) {
    problems.push(`heap grew by ${mb(heapGrowth)} after warm-up (allowed ${mb(HEAP_SLACK_BYTES)})`);
  }
  if (atEnd.resources.total > atStart.resources.total + HANDLE_SLACK) {
    problems.push(
      `active handles went from ${atStart.resources.total} to ${atEnd.resources.total}`,
    );
  }
  return { flat: problems.length === 0, problems, lines };
}
