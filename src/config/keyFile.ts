import { accessSync, constants, statSync } from 'node:fs';
import { KeyFileError } from './errors.js';

/**
 * Refuses a private key the way ssh would, before any connection is tried:
 * it must exist, be a readable regular file, and not be readable by group or
 * others (ssh ignores such a key: "UNPROTECTED PRIVATE KEY FILE"). Only the
 * file's metadata is looked at; its contents are never read here.
 * Synchronous (a stat and an access, microseconds): a login checks its key
 * and opens its TCP connection in the same tick, before the rest of a start
 * takes the thread (remote/sshRoute.ts).
 */
export function checkKeyFile(path: string, hostName: string): void {
  let mode: number;
  try {
    const info = statSync(path);
    if (!info.isFile()) throw new KeyFileError(`SSH key ${path} for host ${hostName} is not a regular file`);
    mode = info.mode;
    accessSync(path, constants.R_OK);
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
