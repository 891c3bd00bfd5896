import { withDeadline } from './deadline.js';
import { type KeyStore, StoreMisconfiguredError } from './store.js';

/**
 * The store half of `service.ready()`: runs the store's readiness check, if it has one,
 * within the store deadline. A configuration error passes through as it is (its message
 * names the fix); anything else is reported as an outage, so that a host's logs tell "fix
 * the setup" from "wait for the database".
 */
export async function checkStore(store: KeyStore, timeoutMs: number): Promise<void> {
  if (!store.check) return;
  try {
    await withDeadline(
      new Promise<void>((resolve) => resolve(store.check?.())),
      timeoutMs,
      'the store readiness check',
    );
  } catch (error) {
    if (error instanceof StoreMisconfiguredError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new StoreUnavailableError(
      `keyward: the store did not answer its readiness check (${reason || 'no message'}); it looks down or unreachable, not misconfigured: check that it runs and that its address is right, then retry.`,
      { cause: error },
    );
  }
}

/** `service.ready()` met a store that is down or unreachable. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly code = 'store_unavailable';
}
