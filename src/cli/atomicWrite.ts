import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { OffloadError } from '../errors/offloadError.js';

/**
 * Writes a file so that readers see the old content or the whole new one,
 * never half of it: a temporary file beside it, then rename (atomic within
 * one file system). `what` names the file in the error (`the report`).
 */
export async function writeFileAtomic(path: string, text: string, what: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(temp, text, { mode: 0o644 });
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new OffloadError(`cannot write ${what} to ${path}: ${(error as Error).message}`, undefined, { cause: error });
  }
}
