import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { KeyFileError } from './errors.js';

/**
 * Refuses a private key the way ssh would, before any connection is tried:
 * it must exist, be a readable regular file, and not be readable by group or
 * others (ssh ignores such a key: "UNPROTECTED PRIVATE KEY FILE"). Only the
 * file's metadata is looked at; its contents are never read here.
 */
export async function checkKeyFile(path: string, hostName: string): Promise<void> {
  let mode: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new KeyFileError(`SSH key ${path} for host ${hostName} is not a regular file`);
    mode = info.mode;
    await access(path, constants.R_OK);
  } catch (error) {
    if (error instanceof KeyFileError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KeyFileError(`SSH key ${path} for host ${hostName} does not exist`, { cause: error });
    throw new KeyFileError(`SSH key ${path} for host ${hostName} cannot be read (${code ?? String(error)})`, { cause: error });
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new KeyFileError(
      `SSH key ${path} for host ${hostName} is accessible by group or others (mode ${octal}); ssh refuses such keys: run chmod 600 ${path}`,
    );
  }
}
