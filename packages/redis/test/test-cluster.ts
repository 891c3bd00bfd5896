import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Cluster } from 'ioredis';

const run = promisify(execFile);

/**
 * A throwaway 3-master Redis Cluster on loopback, for tests: real `redis-server`
 * processes in a temporary directory, no persistence, gone after `stop()`.
 *
 * ```ts
 * const cluster = await startRedisCluster();
 * const client = cluster.client();
 * afterAll(() => cluster.stop());
 * ```
 */
export interface TestRedisCluster {
  /** Client ports of the masters, all on 127.0.0.1. */
  readonly ports: readonly number[];
  /** A new ioredis Cluster client, ready to use. `stop()` closes those still open. */
  client(): Promise<Cluster>;
  /** Closes the clients, kills the servers and removes their directory. */
  stop(): Promise<void>;
}

export interface StartRedisClusterOptions {
  /** @default 3 */
  masters?: number;
  /** Give up when the cluster is not serving after this long.
   * @default 15_000 */
  timeoutMs?: number;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Starts the cluster. Throws (after cleaning up) when redis-server is missing or the
 * cluster does not come up, so the caller can report the service as unavailable. */
export async function startRedisCluster(
  options: StartRedisClusterOptions = {},
): Promise<TestRedisCluster> {
  const masters = options.masters ?? 3;
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  const dir = await mkdtemp(join(tmpdir(), 'keyward-redis-cluster-'));
  const processes: ChildProcess[] = [];
  const clients = new Set<Cluster>();

  // A test run killed before afterAll must not leave servers behind.
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const child of running) child.kill('SIGKILL');
    });
  }

  const stop = async () => {
    await Promise.all([...clients].map((c) => c.quit().catch(() => c.disconnect())));
    clients.clear();
    await Promise.all(processes.map(stopProcess));
    await rm(dir, { recursive: true, force: true });
  };

  try {
    // Ports the kernel just handed out are free; `--cluster-port` pins the bus port too,
    // since port + 10000 may be taken or past 65535.
    const ports = await freePorts(masters * 2);
    const clientPorts = ports.slice(0, masters);
    for (const [i, port] of clientPorts.entries()) {
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--cluster-port',
          String(ports[masters + i]),
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '2000',
          '--save',
          '',
          '--appendonly',
          'no',
          '--bind',
          '127.0.0.1',
          '--dir',
          dir,
          '--logfile',
          join(dir, `redis-${port}.log`),
        ],
        { stdio: 'ignore' },
      );
      processes.push(child);
      running.add(child);
      child.once('exit', () => running.delete(child));
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
    }
    // A server that exits (a port taken in the meantime, a bad flag) fails the start now
    // rather than at the deadline.
    const alive = async (probe: () => Promise<string>) => {
      const dead = processes.findIndex((p) => p.exitCode !== null || p.signalCode !== null);
      if (dead === -1) return probe();
      const port = clientPorts[dead];
      const log = await readFile(join(dir, `redis-${port}.log`), 'utf8').catch(() => '');
      const tail = log.trim().split('\n').slice(-3).join(' | ');
      throw new Fatal(`redis-server on port ${port} exited early: ${tail}`);
    };
    for (const port of clientPorts) {
      await waitFor(deadline, () => alive(() => cli(port, 'PING')), 'PONG');
    }
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...clientPorts.map((port) => `127.0.0.1:${port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeout: Math.max(1, deadline - Date.now()) },
    );
    for (const port of clientPorts) {
      await waitFor(deadline, () => cli(port, 'CLUSTER', 'INFO'), 'cluster_state:ok');
    }

    return {
      ports: clientPorts,
      async client() {
        const client = new Cluster(
          clientPorts.map((port) => ({ host: '127.0.0.1', port })),
          { lazyConnect: true },
        );
        clients.add(client);
        await client.connect();
        return client;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

class Fatal extends Error {}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    timeout: 2_000,
  });
  return stdout;
}

async function waitFor(deadline: number, probe: () => Promise<string>, expected: string) {
  let last: unknown = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const output = await probe();
      if (output.includes(expected)) return;
      last = output.trim();
    } catch (error) {
      if (error instanceof Fatal) throw error;
      last = error;
    }
    await sleep(50);
  }
  const detail = last instanceof Error ? last.message : String(last);
  throw new Error(`Redis Cluster did not come up (waiting for "${expected}"): ${detail}`);
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP port');
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
  await exited;
  clearTimeout(timer);
}
