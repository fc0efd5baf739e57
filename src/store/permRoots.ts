import { execFile } from 'node:child_process';
import { lstat, readlink } from 'node:fs/promises';
import { resolve, dirname } from 'node:path';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { OutLink } from './outLinks.js';
import { DEFAULT_STORE_DIR } from '../storePath/storePath.js';

/**
 * Refuses, before anything is built, a result link that Nix's addPermRoot
 * would refuse at the end: a path inside the store, or one that exists and
 * is not a symlink into the store (nix-build finds out only after building).
 */
export async function checkOutLinksFree(links: readonly OutLink[], storeDir = DEFAULT_STORE_DIR): Promise<void> {
  const inStore = (path: string) => path.startsWith(`${storeDir}/`);
  for (const { link } of links) {
    if (inStore(link)) {
      throw new OffloadError(`cannot create the result link ${link}: a GC root inside the Nix store is forbidden (give --out-link a path outside ${storeDir})`, ExitCode.badInput);
    }
    let isLink: boolean;
    try {
      isLink = (await lstat(link)).isSymbolicLink();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new OffloadError(`cannot create the result link ${link}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, ExitCode.badInput, { cause: error });
    }
    const target = isLink ? resolve(dirname(link), await readlink(link)) : undefined;
    if (target === undefined || !inStore(target)) {
      throw new OffloadError(
        `cannot create the result link ${link}: it exists and is not a link into ${storeDir} (move it away, or pass --out-link PATH or --no-out-link)`,
        ExitCode.badInput,
      );
    }
  }
}

export interface PermRootOptions {
  /** Environment of nix-store; default ours, so NIX_REMOTE reaches it. */
  env?: NodeJS.ProcessEnv;
  nixStoreBin?: string;
}

/**
 * Makes each link and registers it as an indirect GC root the way
 * nix-build does, through the store: `nix-store --realise PATH --add-root
 * LINK` runs Nix's own addPermRoot, which points LINK at PATH and adds
 * /nix/var/nix/gcroots/auto/<hash> → LINK. With a daemon store the daemon
 * adds that root (AddIndirectRoot), which a user could not write directly.
 * The paths are valid already, so --realise only checks them.
 */
export async function addPermRoots(links: readonly OutLink[], options: PermRootOptions = {}): Promise<void> {
  const bin = options.nixStoreBin ?? 'nix-store';
  for (const { link, path } of links) {
    await new Promise<void>((done, fail) => {
      execFile(bin, ['--realise', path, '--add-root', link], { env: options.env ?? process.env }, (error, _stdout, stderr) => {
        if (!error) return done();
        const said = stderr.replace(/\x1b\[[0-9;]*m/g, '').trim().split('\n').pop() ?? '';
        fail(new OffloadError(`cannot register the result link ${link} → ${path} as a GC root: ${said || error.message}`, ExitCode.failed, { cause: error }));
      });
    });
  }
}
