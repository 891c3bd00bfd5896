import {
  createKeyService,
  isKeywardError,
  type KeyService,
  StoreMisconfiguredError,
  StoreUnavailableError,
} from '@keyward/core';
import type { StoreConfig } from './config.js';
import { CliError, EXIT, oneLine, storeError, usageError } from './errors.js';
import { openStore } from './stores.js';

/** What a command sees: the key service on the configured store, and a warning channel. */
export interface Session {
  service: KeyService;
  config: StoreConfig;
}

/**
 * Opens the store, makes a key service on it (with the bus, so revocations and rolls reach
 * the running apps), checks the store is ready, runs `work`, then closes everything,
 * lastUsedAt writes included. Errors become `CliError`s with the exit code of their kind.
 */
export async function withService<T>(
  config: StoreConfig,
  warn: (line: string) => void,
  work: (session: Session) => Promise<T>,
): Promise<T> {
  const onError = (error: unknown) =>
    warn(`warning: ${oneLine(error instanceof Error ? error.message : String(error))}`);
  const opened = await openStore(config, 'use', onError);
  const service = createKeyService({
    store: opened.store,
    prefix: config.prefix,
    ...(opened.bus ? { bus: opened.bus } : {}),
    onError,
  });
  try {
    await service.ready();
    return await work({ service, config });
  } catch (error) {
    throw asCliError(error);
  } finally {
    await service.close().catch(onError);
    await opened.close().catch(() => {});
  }
}

/** Opens the store for `keyward migrate` and runs its migration. */
export async function migrateStore(config: StoreConfig): Promise<string> {
  const opened = await openStore(config, 'migrate', () => {});
  try {
    return await opened.migrate();
  } catch (error) {
    throw asCliError(error);
  } finally {
    await opened.close().catch(() => {});
  }
}

/** Maps what the key service and the stores throw onto the exit-code table. */
export function asCliError(error: unknown): unknown {
  if (error instanceof CliError) return error;
  if (error instanceof StoreMisconfiguredError) {
    // The store's message names the library call (`migrate(db)`); here the fix is a command.
    return storeError(
      /does not exist|lacks a column/.test(error.message)
        ? `${oneLine(error.message).replace(/; run migrate\(db.*$/, '')}: run \`keyward migrate\` first.`
        : oneLine(error.message),
    );
  }
  if (error instanceof StoreUnavailableError) return storeError(oneLine(error.message));
  if (isKeywardError(error)) {
    if (error.code === 'service_unavailable' || error.code === 'internal_error') {
      const cause = error.cause instanceof Error ? ` (${oneLine(error.cause.message)})` : '';
      return storeError(
        `the store did not answer${cause}: check that it runs and that its address is right, then retry.`,
      );
    }
    if (error.code === 'invalid_request' || error.code === 'invalid_json') {
      return usageError(oneLine(error.message));
    }
    return new CliError(EXIT.refused, oneLine(error.message));
  }
  return error;
}
