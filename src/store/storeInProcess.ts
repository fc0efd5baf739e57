import { accessSync, constants } from 'node:fs';
import { DEFAULT_STORE_DIR } from '../storePath/storePath.js';

/**
 * Does a local Nix command (`nix-store --serve`) open the store in its own
 * process, rather than ask a nix-daemon? Such a store takes every path that
 * `nix-store --serve --write` adds, signed or not (add-to-store-NAR adds with
 * NoCheckSigs): only a daemon weighs who is asking. Nix 2.8 picks the store
 * from the `store` setting (default `$NIX_REMOTE`, else `auto`;
 * libstore/store-api.cc openFromNonUri): `local` (with or without
 * parameters) is in-process; `auto` is when the user can read and write
 * Nix's state directory, else it is the daemon (or a chroot store, which is
 * not worth telling apart here). Any other value (daemon, unix://, a URL, an
 * `auto` with parameters) is not known to be: the store is then asked.
 * Pure given `stateDirWritable`.
 */
export function opensStoreInProcess(store: string, stateDirWritable: () => boolean): boolean {
  const value = store.trim();
  if (value === 'local' || value.startsWith('local?')) return true;
  if (value === 'auto' || value === '') return stateDirWritable();
  return false;
}

/** Nix's state directory (`$NIX_STATE_DIR`, else Debian's and upstream's default), readable and writable by this user. */
export function nixStateDirWritable(env: NodeJS.ProcessEnv = process.env): boolean {
  try {
    accessSync(env.NIX_STATE_DIR || '/nix/var/nix', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether the files of the local store's paths are where their store paths
 * say, readable in this process, so a path's NAR can be written from them
 * (store/narFromFiles.ts) as Nix's build-remote does in its own process:
 * the store is opened in-process (`local`, or `auto` with a writable state
 * directory) without parameters, and Nix's store directory is `storeDir`.
 * Not so for a chroot store (`local?root=…`, or `auto` falling back to one),
 * a `real=` or `store=` parameter, or a daemon or remote store, whose files
 * may lie elsewhere or belong to another user: their NARs come from
 * `nix-store --serve`. Pure given `stateDirWritable` and `env`.
 */
export function storeFilesReadable(store: string, storeDir: string, stateDirWritable: () => boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  // Any parameter (root=, real=, store=, …) may put the files elsewhere.
  if (store.includes('?')) return false;
  return storeDir === (env.NIX_STORE_DIR || DEFAULT_STORE_DIR) && opensStoreInProcess(store, stateDirWritable);
}
