import { Agent, request } from 'node:http';

/** One answer, with the headers the rate-limit tests read. */
export interface LimitedAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** When the answer arrived, epoch ms. */
  at: number;
}

/**
 * GETs over `connections` kept-alive sockets, returning headers too. Free sockets are
 * reused oldest first: with Node's default (newest first) a socket at the bottom of the
 * pool can sit idle until the server's keep-alive timeout closes it just as the client
 * sends on it, and the request fails with ECONNRESET (seen once in CI, 3 instances on Redis).
 */
export function limitClient(connections: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections, scheduling: 'fifo' });
  return {
    get(url: string, path: string, headers: Record<string, string>): Promise<LimitedAnswer> {
      const target = new URL(url);
      return new Promise((resolve, reject) => {
        const req = request(
          { agent, host: target.hostname, port: target.port, path, headers },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('error', reject);
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: Buffer.concat(chunks).toString(),
                at: Date.now(),
              }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    },
    close: () => agent.destroy(),
  };
}

/** The `r` and `t` of a `RateLimit` field, or undefined. */
export function readRateLimit(value: unknown): { r: number; t: number } | undefined {
  const match = typeof value === 'string' ? /^"window";r=(\d+);t=(\d+)$/.exec(value) : null;
  return match ? { r: Number(match[1]), t: Number(match[2]) } : undefined;
}

/**
 * Which window (its start, epoch ms) an answer was decided in, from its `t` (whole seconds
 * to the window's end, rounded up, when the server decided) and a time just after the
 * decision: the window boundary nearest to that time + (t − ½) s. Exact while that time
 * is well under half a second after the decision: an admitted answer from `TIMED_PATH`
 * carries the server's own clock (`{ at }`), read as its handler ran; otherwise, when the
 * answer arrived.
 */
export function windowOf(answer: LimitedAnswer, t: number, windowSec: number): number {
  const size = windowSec * 1000;
  const end = Math.round((serverTime(answer) + (t - 0.5) * 1000) / size) * size;
  return end - size;
}

function serverTime(answer: LimitedAnswer): number {
  if (answer.status !== 200) return answer.at;
  const at = (JSON.parse(answer.body) as { at?: unknown }).at;
  return typeof at === 'number' ? at : answer.at;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
