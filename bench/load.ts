/**
 * Runs autocannon in this (the parent) process against a server child, several loads at
 * once when asked (the flood), and measures each from its own responses: autocannon's
 * latency histogram keeps whole milliseconds only, too coarse for a sub-millisecond p50.
 */
import autocannon from 'autocannon';
import { percentile } from './stats.js';

export interface LoadSpec {
  url: string;
  path: string;
  connections: number;
  /** Run for this long (seconds)... */
  durationS?: number;
  /** ...after this long (seconds) of the same load that is not counted: autocannon opens
   * its connections together, and the first second or so runs at a fraction of the
   * steady rate, by a different fraction each time. Only with `durationS`. */
  settleS?: number;
  /** ...or send exactly this many requests. */
  amount?: number;
  /** The `X-API-Key` to send: none, a fixed one, or a fresh one per request. */
  key?: string | (() => string);
}

export interface LoadResult {
  /** 2xx responses per second. */
  reqPerSec: number;
  /** All responses per second, whatever their status. */
  responsesPerSec: number;
  /** Latency of the 2xx responses, in ms. */
  p50Ms: number;
  p99Ms: number;
  ok: number;
  /** Every response, also those after the window: what the server did all in all. */
  total: number;
  /** Responses by status code. */
  statuses: Record<number, number>;
  errors: number;
  seconds: number;
}

/** Runs the loads side by side; counts only responses within `durationS` seconds after
 * the first `settleS`, since autocannon stops on its next tick and the loads would not end
 * together. */
export async function runLoads(specs: readonly LoadSpec[]): Promise<LoadResult[]> {
  const started = performance.now();
  return Promise.all(specs.map((spec) => runLoad(spec, started)));
}

async function runLoad(spec: LoadSpec, started: number): Promise<LoadResult> {
  const request: autocannon.Request = { method: 'GET', path: spec.path };
  if (typeof spec.key === 'string') request.headers = { 'x-api-key': spec.key };
  const nextKey = spec.key;
  if (typeof nextKey === 'function') {
    request.setupRequest = (req) => ({ ...req, headers: { 'x-api-key': nextKey() } });
  }
  const windowMs = spec.durationS === undefined ? Number.POSITIVE_INFINITY : spec.durationS * 1000;
  const settleMs = spec.durationS === undefined ? 0 : (spec.settleS ?? 0) * 1000;
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  let responses = 0;
  let total = 0;
  let last = started;
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    ...(spec.amount === undefined
      ? { duration: (spec.durationS ?? 1) + settleMs / 1000 }
      : { amount: spec.amount }),
    timeout: 30,
    // autocannon stops at its first sample after the duration: sample often, stop on time.
    sampleInt: 100,
    requests: [request],
  });
  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    total++;
    const now = performance.now();
    if (now - started < settleMs || now - started > settleMs + windowMs) return;
    last = now;
    responses++;
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
  });
  const result = await instance;
  const seconds = (spec.durationS ?? (last - started) / 1000) || Number.NaN;
  const sorted = Float64Array.from(latencies).sort();
  return {
    reqPerSec: latencies.length / seconds,
    responsesPerSec: responses / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    ok: latencies.length,
    total,
    statuses,
    errors: result.errors,
    seconds,
  };
}
