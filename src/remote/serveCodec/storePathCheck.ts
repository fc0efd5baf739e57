/**
 * Private minimal store-path check for the codec, used until
 * src/store/storePath.ts (owned elsewhere) lands; same rule as Nix's
 * StorePath: 32 nix-base32 characters, a dash, a name of allowed characters.
 */
export const DEFAULT_STORE_DIR = '/nix/store';

const HASH_AND_NAME = /^[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]{1,211}$/;

export function looksLikeStorePath(path: string, storeDir = DEFAULT_STORE_DIR): boolean {
  const prefix = `${storeDir}/`;
  if (!path.startsWith(prefix)) return false;
  const base = path.slice(prefix.length);
  return HASH_AND_NAME.test(base) && !base.slice(33).startsWith('.');
}
