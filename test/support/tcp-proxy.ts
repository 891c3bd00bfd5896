import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

export interface TcpProxy {
  /** The loopback port clients connect to instead of the target's. */
  readonly port: number;
  /** Connections currently paired with the target. */
  readonly openConnections: number;
  /**
   * The server went away: every connection is reset, and new ones are refused
   * (ECONNREFUSED) until `restore()`.
   */
  cut(): Promise<void>;
  /**
   * A network partition: connections stay open but nothing crosses in either direction,
   * and new connections are accepted but never reach the target. Bytes sent meanwhile are
   * held, and delivered on `restore()`, as TCP does when a short partition heals.
   */
  stall(): void;
  /** Back to forwarding, on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  /** Connected lazily when a stalled connection is accepted. */
  upstream: Socket | null;
  /** Bytes from the client held while stalled, before any upstream exists. */
  held: Buffer[];
}

/**
 * A TCP proxy on loopback for fault tests: clients point at `port`, the proxy forwards to
 * `target`, and the test decides when the "network" fails and how.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let state: 'forwarding' | 'stalled' | 'cut' = 'forwarding';
  let server: Server = createServer(accept);
  const port = await listen(server, 0);

  function accept(client: Socket): void {
    const pair: Pair = { client, upstream: null, held: [] };
    pairs.add(pair);
    client.setNoDelay(true);
    client.on('error', () => drop(pair));
    client.on('close', () => drop(pair));
    if (state === 'stalled') {
      client.on('data', (chunk: Buffer) => {
        if (!pair.upstream) pair.held.push(chunk);
      });
      return;
    }
    link(pair);
  }

  /** Connects the pair's upstream and pipes both ways, sending what was held first. */
  function link(pair: Pair): void {
    const upstream = tcpConnect(target.port, target.host);
    pair.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', () => drop(pair));
    upstream.on('close', () => drop(pair));
    for (const chunk of pair.held.splice(0)) upstream.write(chunk);
    pair.client.removeAllListeners('data');
    pair.client.pipe(upstream);
    upstream.pipe(pair.client);
  }

  function drop(pair: Pair): void {
    if (!pairs.delete(pair)) return;
    if (!pair.client.destroyed) pair.client.resetAndDestroy();
    pair.upstream?.destroy();
  }

  function pause(pair: Pair): void {
    // Unpiped and paused, each socket keeps what arrives in the kernel's buffers; the
    // peers see silence, not an error.
    pair.client.unpipe();
    pair.upstream?.unpipe();
    pair.client.pause();
    pair.upstream?.pause();
  }

  function resume(pair: Pair): void {
    if (!pair.upstream) {
      link(pair);
      return;
    }
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
    pair.client.resume();
    pair.upstream.resume();
  }

  return {
    port,
    get openConnections() {
      return pairs.size;
    },

    async cut() {
      if (state === 'cut') return;
      state = 'cut';
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const pair of [...pairs]) drop(pair);
      await closed;
    },

    stall() {
      if (state !== 'forwarding') throw new Error(`cannot stall a proxy that is ${state}`);
      state = 'stalled';
      for (const pair of pairs) pause(pair);
    },

    async restore() {
      if (state === 'cut') {
        server = createServer(accept);
        await listen(server, port);
      } else if (state === 'stalled') {
        for (const pair of [...pairs]) resume(pair);
      }
      state = 'forwarding';
    },

    async close() {
      for (const pair of [...pairs]) drop(pair);
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Listens on loopback; a port given back after `cut()` is retried briefly in case the
 * kernel has not released it yet. */
async function listen(server: Server, port: number): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address();
      if (typeof address !== 'object' || address === null) throw new Error('no address');
      return address.port;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' || attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
