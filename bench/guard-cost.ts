/**
 * `pnpm bench:guard-cost`: what the warm guard adds to a request, in µs, with the noise of a
 * shared machine taken out. One keep-alive connection sends, one at a time and over and
 * over, `/hello`, `/ideal`, `/hello`, `/guarded` to the bench server (memory store, key
 * cached): the routes take turns request by request, so a neighbour's load weighs on all
 * of them alike, and each guarded route comes right after a `/hello`, so both find the
 * caches in the same state. Prints, per framework, the median round trip of each route
 * and what `/ideal` (SHA-256 + Map) and `/guarded` (keyward) add to `/hello`'s.
 *
 * Under load (`pnpm bench`) the same costs decide the warm ratio: at Fastify's ~50-60 µs
 * per request, 0.85 leaves the guard about 9 µs.
 */
import { hash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { OWASP_ARGON2 } from '@keyward/core';
import { makeKeys } from './keys.js';
import type { Framework } from './protocol.js';
import { ServerChild } from './server-child.js';
import { median } from './stats.js';

const ROUNDS = Number(process.env.BENCH_GUARD_COST_ROUNDS ?? 5);
const REQUESTS = Number(process.env.BENCH_GUARD_COST_REQUESTS ?? 20_000);
const WARM_UP = 2_000;
/** What is sent in turn: `/guarded` twice, with a plain key and with one that has a rate
 * limit (far above what is sent), each after a `/hello`. */
const SEQUENCE = [
  { label: '/hello', path: '/hello', limited: false },
  { label: '/ideal', path: '/ideal', limited: false },
  { label: '/hello', path: '/hello', limited: false },
  { label: '/guarded', path: '/guarded', limited: false },
  { label: '/hello', path: '/hello', limited: false },
  { label: '/guarded (limited key)', path: '/guarded', limited: true },
] as const;

const [key, limitedKey] = await makeKeys(2, OWASP_ARGON2);
if (!key || !limitedKey) throw new Error('no bench key');
limitedKey.record.rateLimit = { limit: 1_000_000, windowSec: 60 };

console.log(
  `guard cost: ${ROUNDS} rounds of ${REQUESTS} requests on one connection, ` +
    `${SEQUENCE.map((step) => step.label).join(' → ')} in turn; µs are medians of the rounds' median round trips`,
);
for (const framework of ['fastify', 'express', 'hono'] as Framework[]) {
  const server = await ServerChild.start({
    framework,
    store: 'memory',
    idealDigests: [hash('sha256', key.rawKey, 'base64')],
  });
  try {
    await server.call({ op: 'seed', records: [key.record, limitedKey.record] });
    const rounds: Array<Record<string, number>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      rounds.push(await roundTrips(server.url, key.rawKey, limitedKey.rawKey));
    }
    const at = (path: string) => median(rounds.map((r) => r[path] ?? Number.NaN));
    const [hello, ideal, guarded, limited] = [
      '/hello',
      '/ideal',
      '/guarded',
      '/guarded (limited key)',
    ].map(at);
    const plus = (micros = Number.NaN) => `+${(micros - (hello ?? Number.NaN)).toFixed(1)} µs`;
    console.log(
      `${framework.padEnd(8)} /hello ${hello?.toFixed(1)} µs · /ideal ${plus(ideal)}` +
        ` · /guarded ${plus(guarded)} (guarded − ideal: ${((guarded ?? 0) - (ideal ?? 0)).toFixed(1)} µs)` +
        ` · limited key ${plus(limited)}`,
    );
  } finally {
    await server.close();
  }
}

/** Median round trip (µs) per path over `REQUESTS` requests sent one at a time. */
async function roundTrips(
  url: string,
  rawKey: string,
  limitedRawKey: string,
): Promise<Record<string, number>> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve).once('error', reject);
  });
  const requests = SEQUENCE.map(({ path, limited }) =>
    Buffer.from(
      `GET ${path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: ${limited ? limitedRawKey : rawKey}\r\n\r\n`,
    ),
  );
  const times = new Map<string, number[]>(SEQUENCE.map(({ label }) => [label, []]));
  try {
    await sendInTurn(socket, requests, (i, micros) => {
      if (i >= WARM_UP) times.get(SEQUENCE[i % SEQUENCE.length]?.label ?? '')?.push(micros);
    });
  } finally {
    socket.destroy();
  }
  return Object.fromEntries([...times].map(([path, t]) => [path, median(t)]));
}

/** Sends request i, waits for its whole response, then sends i + 1; every response is the
 * same small 200 JSON (`{"hello":"world"}`), anything else is an error. */
function sendInTurn(
  socket: Socket,
  requests: Buffer[],
  onResponse: (i: number, micros: number) => void,
): Promise<void> {
  const total = WARM_UP + REQUESTS;
  return new Promise((resolve, reject) => {
    let i = 0;
    let sentAt = 0;
    let buffered = '';
    const send = () => {
      sentAt = performance.now();
      socket.write(requests[i % requests.length] as Buffer);
    };
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      const end = buffered.indexOf('}');
      if (end < 0) return;
      if (!buffered.startsWith('HTTP/1.1 200 ')) {
        reject(new Error(`unexpected response: ${buffered.slice(0, 80)}`));
        return;
      }
      onResponse(i, (performance.now() - sentAt) * 1000);
      buffered = buffered.slice(end + 1);
      if (++i === total) resolve();
      else send();
    });
    send();
  });
}
