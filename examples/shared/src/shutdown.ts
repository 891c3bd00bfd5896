import type { StartedServer } from './run.js';

/**
 * Stops the server without letting a client hold the process: idle keep-alive connections
 * are closed at once, requests under way get `graceMs` to finish, then every connection
 * still open is cut. Half a request head, sent by anyone (no key needed), is such a
 * connection: Node would keep it until its headersTimeout (a minute by default).
 */
export async function closeServer(server: StartedServer, graceMs: number): Promise<void> {
  const closing = server.close();
  server.server.closeIdleConnections();
  const cut = setTimeout(() => server.server.closeAllConnections(), graceMs);
  try {
    await closing;
  } finally {
    clearTimeout(cut);
  }
}
