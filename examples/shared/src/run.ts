import type { Server } from 'node:http';
import { createKeyService, type KeyService } from '@keyward/core';
import { type ExampleConfig, readConfig } from './config.js';
import { startDiagnostics } from './diagnostics.js';
import { closeServer } from './shutdown.js';
import { openStore } from './stores.js';
import { welcomeText } from './welcome.js';

export interface StartedServer {
  /** The port the app listens on (useful with PORT=0). */
  port: number;
  /** The Node server underneath, so that shutdown can cut the connections that stay open. */
  server: Server;
  /** Stops accepting connections; resolves once every open one has ended. */
  close(): Promise<void>;
}

export interface ExampleApp {
  /** The framework's name, for the welcome text. */
  framework: string;
  /** Builds the host app around the service and starts listening. */
  listen(service: KeyService, config: ExampleConfig): Promise<StartedServer>;
}

/**
 * Runs an example: store from the environment, key service, the framework's app, a
 * bootstrap key for each demo account that holds none, the welcome text, and a clean
 * shutdown on SIGINT/SIGTERM (pending lastUsedAt values are written before exit).
 */
export async function runExample(app: ExampleApp): Promise<void> {
  const config = readConfig();
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const logError = (error: unknown) =>
    process.stderr.write(`[keyward] ${error instanceof Error ? error.message : String(error)}\n`);

  const opened = await openStore(config, logError);
  const service = createKeyService({
    store: opened.store,
    ...(opened.bus ? { bus: opened.bus } : {}),
    onError: logError,
    // Quarantine (the default): where a real app would email the key's owner.
    leaks: {
      onLeak: ({ keyId, ownerId, source, url, action }) => {
        log(
          `[keyward] key ${keyId} of ${ownerId} reported leaked by ${source}${url ? ` at ${url}` : ''}: ${action}`,
        );
      },
    },
    onInvalidKey: ({ reason, keyPrefix }) =>
      log(`[keyward] refused ${keyPrefix ? `${keyPrefix}… ` : 'a key '}(${reason})`),
  });
  await service.ready();
  const server = await app.listen(service, config);
  const diagnostics = config.diagnostics ? await startDiagnostics(service) : undefined;
  if (diagnostics) log(`diagnostics (KEYWARD_DIAGNOSTICS=1): ${diagnostics.url}`);

  const bootstrapped: Array<{ account: string; rawKey: string }> = [];
  for (const account of config.accounts) {
    if ((await service.list(account)).length > 0) continue;
    const { rawKey } = await service.create(account, 'bootstrap');
    bootstrapped.push({ account, rawKey });
  }
  log(
    welcomeText({
      framework: app.framework,
      store: opened.label,
      baseUrl: `http://${config.host}:${server.port}`,
      accounts: config.accounts,
      bootstrapped,
      command:
        app.framework === 'Express' ? 'pnpm demo' : `pnpm demo:${app.framework.toLowerCase()}`,
    }),
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`\n${signal}: closing…`);
    // Each step runs whatever the one before did: above all service.close(), which writes
    // the pending lastUsedAt values, must not be skipped because the server would not stop.
    let failed = false;
    const step = (done: Promise<void> | undefined) =>
      done?.catch((error: unknown) => {
        failed = true;
        logError(error);
      });
    await step(closeServer(server, config.shutdownGraceMs));
    await step(diagnostics?.close());
    await step(
      service.close().then(() => {
        log('pending lastUsedAt values written');
      }),
    );
    await step(opened.close());
    process.exit(failed ? 1 : 0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

/** Starts the example, or explains on stderr why it cannot. */
export function main(app: ExampleApp): void {
  runExample(app).catch((error: unknown) => {
    const code = (error as { code?: string } | null)?.code;
    const message =
      code === 'EADDRINUSE'
        ? `port ${process.env.PORT ?? 3000} is in use (another example running?); set PORT to another port, or PORT=0 for any free one.`
        : error instanceof Error
          ? error.message
          : String(error);
    process.stderr.write(`keyward example could not start: ${message}\n`);
    process.exit(1);
  });
}
