import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The file that says which process has a PGlite folder open. */
export const PGLITE_LOCK_FILE = 'keyward-in-use.json';

/** A PGlite folder another live process has open. */
export class PgliteFolderInUseError extends Error {
  override readonly name = 'PgliteFolderInUseError';
  constructor(
    readonly holder: string,
    readonly pid: number,
    readonly file: string,
  ) {
    super(
      `the PGlite folder is in use by ${holder} (pid ${pid}); PGlite serves one process at a time: stop it first, or share keys through Postgres or Redis (if no such process runs, delete ${file})`,
    );
  }
}

/**
 * Marks a PGlite folder as open by this process, or throws `PgliteFolderInUseError` if a
 * live process marked it. PGlite keeps no lock of its own: a second process opening the
 * same folder sees a stale copy, and what it writes is lost or damages the database. The
 * keyward CLI and examples take this mark; a mark left by a process that died is taken
 * over. Resolves to the function that removes it.
 */
export async function lockPgliteFolder(
  dataDir: string,
  holder: string,
): Promise<() => Promise<void>> {
  const file = join(dataDir, PGLITE_LOCK_FILE);
  const mark = JSON.stringify({ pid: process.pid, holder, since: new Date().toISOString() });
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(file, mark, { flag: 'wx' });
      return async () => {
        await unlink(file).catch(() => {});
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
    }
    const held = await readMark(file);
    if (held && held.pid !== process.pid && isAlive(held.pid)) {
      throw new PgliteFolderInUseError(held.holder, held.pid, file);
    }
    // Left by a process that is gone (or unreadable): take it over.
    await unlink(file).catch(() => {});
  }
}

async function readMark(file: string): Promise<{ pid: number; holder: string } | null> {
  try {
    const value = JSON.parse(await readFile(file, 'utf8')) as { pid?: unknown; holder?: unknown };
    if (!Number.isSafeInteger(value.pid)) return null;
    return { pid: value.pid as number, holder: String(value.holder ?? 'another process') };
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
