/** Starting a server child (bench/server.ts) and talking to it over IPC. */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Reply, Request, ServerConfig } from './protocol.js';

/** Node flags that run a TypeScript entry point on the workspace's sources, as tsx does. */
export function tsxArgs(): string[] {
  return ['--conditions=keyward-source', '--import', import.meta.resolve('tsx')];
}

/** A server child and the request/reply calls to it. */
export class ServerChild {
  #nextId = 0;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.on('message', (message: Reply) => {
      if (message.type !== 'reply') return;
      const waiter = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.ok) waiter?.resolve(message.value);
      else waiter?.reject(new Error(`server: ${message.error}`));
    });
    child.on('exit', (code) => {
      for (const waiter of this.#pending.values())
        waiter.reject(new Error(`server exited (${code})`));
      this.#pending.clear();
    });
  }

  static async start(config: ServerConfig): Promise<ServerChild> {
    const child = fork(fileURLToPath(new URL('./server.ts', import.meta.url)), [], {
      execArgv: tsxArgs(),
      env: { ...process.env, BENCH_SERVER_CONFIG: JSON.stringify(config) },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('server child did not start in 30 s')),
        30_000,
      );
      child.once('exit', (code) => reject(new Error(`server child exited early (${code})`)));
      child.on('message', (message: Reply) => {
        if (message.type !== 'listening') return;
        clearTimeout(timer);
        resolve(message.url);
      });
    }).catch((error: unknown) => {
      child.kill();
      throw error;
    });
    return new ServerChild(child, url);
  }

  call(request: DistributiveOmit<Request, 'id'>): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.child.send({ ...request, id });
    });
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    if (this.child.exitCode !== null) return;
    const storeErrors = await this.call({ op: 'close' }).catch(() => undefined);
    if (typeof storeErrors === 'number' && storeErrors > 0) {
      console.log(`  (the server reported ${storeErrors} errors to onError)`);
    }
    const timer = setTimeout(() => this.child.kill(), 5000);
    await exited;
    clearTimeout(timer);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
