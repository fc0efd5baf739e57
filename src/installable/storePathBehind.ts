import { readlink, realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * The store path a filesystem path leads to, or undefined when it leads
 * outside the store (a Nix expression file, say). Like Nix's
 * followLinksToStorePath: symlinks are followed one at a time only until
 * the path is inside the store, so an output that is itself a symlink is
 * not followed out of it; then the first component below the store
 * directory is the store path (`/nix/store/…-hello/bin/hello` → the output).
 * Links inside the path (`./result/bin`) are resolved as a last resort.
 */
export async function storePathBehind(path: string, options: { storeDir: string; cwd: string }): Promise<string | undefined> {
  let current = resolve(options.cwd, path);
  for (let hops = 0; hops < 40 && !inStore(current, options.storeDir); hops++) {
    let target: string;
    try {
      target = await readlink(current);
    } catch {
      break; // not a symlink (or not there): nothing more to follow
    }
    current = resolve(dirname(current), target);
  }
  if (!inStore(current, options.storeDir)) {
    try {
      current = await realpath(current);
    } catch {
      return undefined;
    }
  }
  return inStore(current, options.storeDir) ? toStorePath(current, options.storeDir) : undefined;
}

function inStore(path: string, storeDir: string): boolean {
  return path.startsWith(`${storeDir}/`) && path.length > storeDir.length + 1;
}

/** Not validated here: a malformed name is reported where the path is used, with the reason. */
function toStorePath(path: string, storeDir: string): string {
  const below = path.slice(storeDir.length + 1);
  const slash = below.indexOf('/');
  return `${storeDir}/${slash < 0 ? below : below.slice(0, slash)}`;
}
