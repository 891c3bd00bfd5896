import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { InstanceConfig, InstanceQuestion, InstanceStats } from './instance-server.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsx = `${root}node_modules/.bin/tsx`;
const STARTUP_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

export interface RunningInstance {
  url: string;
  /** Everything the process printed so far, both streams. */
  output(): string;
  /** The instance's `service.stats()` and store reads, over IPC. */
  stats(): Promise<InstanceStats>;
  /** When the instance's bus delivered an event for `keyId` (epoch ms, fractional), or
   * `null` if it has not. */
  busArrival(keyId: string): Promise<number | null>;
  /** Closes its stdin, on which it shuts down cleanly (SIGKILL to its process group if it
   * has not exited after 5 s), then the exit code. */
  stop(): Promise<number | null>;
}

/** Starts test/support/instance-server.ts as a process of its own and waits for its URL. */
export async function startInstance(config: InstanceConfig): Promise<RunningInstance> {
  const child: ChildProcess = spawn(
    tsx,
    ['--conditions=keyward-source', `${root}test/support/instance-server.ts`],
    {
      cwd: root,
      env: { ...process.env, KEYWARD_INSTANCE: JSON.stringify(config) },
      // stdin stays open as a lifeline: the instance exits when it closes, so a test
      // runner that dies without running afterAll leaves no server behind.
      stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
      // A group of its own: tsx runs the script in a second process, and a last-resort
      // SIGKILL must reach both.
      detached: true,
    },
  );
  let out = '';
  const collect = (chunk: Buffer) => {
    out += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );

  // Not SIGTERM: tsx forwards it to the script's process and, unless that process reports
  // the signal back within about 60 ms, SIGKILLs it and exits 143. On a loaded machine that
  // cuts the clean shutdown (last lastUsedAt flush, connections) at random.
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin?.end();
      const timer = setTimeout(() => {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      }, STOP_TIMEOUT_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return exited;
  };

  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`instance did not start in time:\n${out}`)),
        STARTUP_TIMEOUT_MS,
      );
      child.stdout?.on('data', () => {
        const match = /^listening on (http:\/\/\S+)$/m.exec(out);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`instance exited (${code}) before it started:\n${out}`));
      });
    });
    let lastId = 0;
    const ask = <T>(question: InstanceQuestion): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const id = ++lastId;
        const onMessage = (message: unknown) => {
          const reply = message as { id?: number; answer?: unknown };
          if (reply?.id !== id) return;
          child.off('message', onMessage);
          resolve(reply.answer as T);
        };
        child.on('message', onMessage);
        child.send({ ...question, id }, (error) => {
          if (!error) return;
          child.off('message', onMessage);
          reject(error);
        });
      });
    const stats = () => ask<InstanceStats>({ type: 'stats' });
    const busArrival = (keyId: string) => ask<number | null>({ type: 'busArrival', keyId });
    return { url, output: () => out, stats, busArrival, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
