/**
 * The cold scenario: keys the server has never seen, sent one at a time on one keep-alive
 * connection, each right after one reference argon2id verify timed inside the server, so
 * that a neighbour's load weighs on both alike. The server also reports what argon2 took
 * inside the requests themselves (keyward announces each verify on its diagnostics
 * channel).
 *
 * Both are needed: on this 2-vCPU VM one verify takes either ~7.5 or ~10.5 ms, depending
 * on where the thread pool runs it (pinned to one CPU, or with one pool thread, the spread
 * is gone). A verify that follows a wait for I/O, such as the store's read, lands in the
 * slow mode more often: with the memory store, a 1 ms timer before the read made argon2
 * alone 2.6 ms slower. The reference, run right after an IPC message, does not see that.
 */
import { Agent, request } from 'node:http';
import type { LoadResult } from './load.js';
import type { ServerChild } from './server-child.js';
import { percentile } from './stats.js';

export interface ColdPass {
  result: LoadResult;
  /** Each request's round trip, ms, in the order sent. */
  latencies: number[];
  /** The reference verify timed before each request, ms. */
  argon2: number[];
  /** The verifications inside the requests, ms. */
  inRequests: number[];
}

export async function coldPass(server: ServerChild, rawKeys: readonly string[]): Promise<ColdPass> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let allMs = 0;
  const argon2: number[] = [];
  const inRequests: number[] = [];
  const statuses: Record<number, number> = {};
  try {
    // Opens the connection, so no request below pays for the TCP handshake.
    await get(server.url, '/hello', undefined, agent);
    await server.call({ op: 'argon2-in-requests' }); // earlier scenarios' verifications
    for (const rawKey of rawKeys) {
      const [reference] = (await server.call({ op: 'argon2-times', samples: 1 })) as number[];
      argon2.push(reference ?? Number.NaN);
      const { status, ms } = await get(server.url, '/guarded', rawKey, agent);
      statuses[status] = (statuses[status] ?? 0) + 1;
      allMs += ms;
      if (status >= 200 && status < 300) latencies.push(ms);
    }
    inRequests.push(...((await server.call({ op: 'argon2-in-requests' })) as number[]));
  } finally {
    agent.destroy();
  }
  const sorted = Float64Array.from(latencies).sort();
  // The rate one connection would reach sending cold keys back to back: the references'
  // time in between is left out.
  const seconds = allMs / 1000;
  return {
    result: {
      reqPerSec: latencies.length / seconds,
      responsesPerSec: rawKeys.length / seconds,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      ok: latencies.length,
      total: rawKeys.length,
      statuses,
      errors: 0,
      seconds,
    },
    latencies,
    argon2,
    inRequests,
  };
}

/** One GET, timed from the call to the last byte of the response. */
function get(
  url: string,
  path: string,
  rawKey: string | undefined,
  agent: Agent,
): Promise<{ status: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const headers = rawKey === undefined ? {} : { 'x-api-key': rawKey };
    request(new URL(path, url), { agent, headers }, (response) => {
      response.resume();
      response.once('error', reject);
      response.once('end', () =>
        resolve({ status: response.statusCode ?? 0, ms: performance.now() - started }),
      );
    })
      .once('error', reject)
      .end();
  });
}
