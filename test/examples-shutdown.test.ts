import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { kyselyStore } from '@keyward/kysely';
import { sendRequest } from '@keyward/testing';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import { afterAll, describe, expect, it } from 'vitest';
import { startExample } from './support/example-process.js';

// A client that sends half a request head and then nothing (no key needed) must not hold
// an example's shutdown open until Node's headersTimeout: an orchestrator would SIGKILL
// the process first, and the last lastUsedAt values would be lost.

const frameworks = ['express', 'fastify', 'hono'] as const;
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Opens a connection and sends a request head that never ends. */
async function holdHalfAHead(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {}); // the server is expected to cut it
  socket.write(`GET /v1/hello HTTP/1.1\r\nHost: ${hostname}\r\n`);
  return socket;
}

describe.each(frameworks)('examples/%s shutdown', (framework) => {
  it('exits with 0 within 5 s of SIGTERM while a client holds half a request head, and writes the last lastUsedAt', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), `keyward-shutdown-${framework}-`));
    dirs.push(dataDir);
    // The default grace (2 s), as an orchestrator would meet it.
    const app = await startExample(framework, {
      KEYWARD_STORE: 'pglite',
      KEYWARD_DATA_DIR: dataDir,
    });
    const rawKey = app.bootstrap.get('demo') as string;
    expect(rawKey).toBeDefined();
    const stuck = await holdHalfAHead(app.url);
    let code: number | null | 'still running' = 'still running';
    try {
      // The use whose lastUsedAt must survive the shutdown.
      const hello = await sendRequest(app.url, {
        path: '/v1/hello',
        headers: { 'X-API-Key': rawKey },
      });
      expect(hello.status).toBe(200);
      const started = Date.now();
      const stopped = app.stop();
      code = await Promise.race([
        stopped,
        new Promise<'still running'>((r) => setTimeout(() => r('still running'), 5_000)),
      ]);
      expect(code, app.output()).toBe(0);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(app.output()).toContain('pending lastUsedAt values written');
    } finally {
      stuck.destroy();
      if (code === 'still running') await app.kill();
    }

    const pglite = await PGlite.create(dataDir);
    const db = new Kysely({ dialect: new PGliteDialect(pglite) });
    try {
      const [key] = await kyselyStore(db).listByOwner('demo');
      expect(key?.lastUsedAt).toBeInstanceOf(Date);
    } finally {
      await db.destroy();
      if (!pglite.closed) await pglite.close();
    }
  }, 120_000);
});
