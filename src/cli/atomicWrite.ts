import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * Writes a file so that readers see the old content or the whole new one,
 * never half of it, even after a crash: a temporary file beside the target
 * (same directory, so rename stays on one file system) with an unguessable
 * name, created exclusively (`wx`: never through an existing file or a
 * symlink planted at that name), flushed to disk, given the mode the target
 * already had, then renamed over it; the directory is synced so the rename
 * itself survives a power loss. `what` names the file in the error
 * (`the report`).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, what: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(8).toString('hex')}.tmp`);
  let handle: FileHandle | undefined;
  try {
    const existingMode = await modeOf(path);
    // New files get the usual 0666 less the umask, as any editor would create them.
    handle = await open(temp, 'wx', 0o666);
    if (existingMode !== undefined) await handle.chmod(existingMode);
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
    await syncDirectory(dir);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw new OffloadError(`cannot write ${what} to ${path}: ${(error as Error).message}`, ExitCode.badInput, { cause: error });
  }
}

async function modeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mode & 0o7777;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Some file systems cannot fsync a directory (EINVAL); the rename still happened. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync().catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EINVAL' && error.code !== 'ENOTSUP') throw error;
    });
  } finally {
    await handle.close();
  }
}
