import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { KeyService } from '@keyward/core';

export interface DiagnosticsServer {
  url: string;
  close(): Promise<void>;
}

/**
 * A window into the running example for `pnpm soak`: with KEYWARD_DIAGNOSTICS=1 the example
 * also serves `GET /__diagnostics` on a loopback port of its own (printed on start), with
 * the process's memory, its active handles by kind, the event-loop delay since the previous
 * read, and the key service's cache sizes. `?gc=1` collects garbage first, when the process
 * runs with --expose-gc, so heap figures taken at different times compare.
 *
 * Off by default, and never on the app's own port: it describes the process, which is not
 * something to show the clients of an API.
 */
export async function startDiagnostics(service: KeyService): Promise<DiagnosticsServer> {
  const resolutionMs = 10;
  const delay = monitorEventLoopDelay({ resolution: resolutionMs });
  delay.enable();
  // The histogram records the time between samples; the delay is what exceeds the interval.
  const ms = (ns: number) => Math.max(0, Math.round(ns / 1e4) / 100 - resolutionMs);

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' || url.pathname !== '/__diagnostics') {
      res.writeHead(404).end();
      return;
    }
    const gc = (globalThis as { gc?: () => void }).gc;
    const collected = url.searchParams.get('gc') === '1' && gc !== undefined;
    if (collected) gc();
    const resources = process.getActiveResourcesInfo();
    const byKind: Record<string, number> = {};
    for (const kind of resources) byKind[kind] = (byKind[kind] ?? 0) + 1;
    const body = JSON.stringify({
      uptimeMs: Math.round(process.uptime() * 1000),
      collected,
      memory: process.memoryUsage(),
      resources: { total: resources.length, byKind },
      eventLoopDelayMs: {
        p50: ms(delay.percentile(50)),
        p99: ms(delay.percentile(99)),
        max: ms(delay.max),
      },
      keyward: service.stats(),
    });
    delay.reset();
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/__diagnostics`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        delay.disable();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
