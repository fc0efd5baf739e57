import { accessSync, constants } from 'node:fs';

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
