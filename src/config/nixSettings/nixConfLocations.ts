import { isAbsolute, join, normalize } from 'node:path';
import { NixConfError } from '../errors.js';

/** Where Nix reads its configuration, derived from the environment as Nix 2.8 does (libstore/globals.cc). */
export interface NixConfLocations {
  /** `$NIX_CONF_DIR`, else /etc/nix: holds nix.conf, and the default `machines` and `netrc`. */
  confDir: string;
  /** `confDir/nix.conf`, read first. */
  systemFile: string;
  /** User files, highest priority first (Nix applies them last to first, so the first wins). */
  userFiles: string[];
  /** How userFiles were chosen, for `offload machines`. */
  userFilesFrom: 'NIX_USER_CONF_FILES' | 'XDG_CONFIG_HOME/XDG_CONFIG_DIRS';
  /** `$NIX_CONFIG`, applied last of all; undefined when unset. */
  nixConfig?: string;
  /** `$NIX_REMOTE`: not a file, but the default of the `store` setting. */
  nixRemote?: string;
}

/** Nix's compiled-in configuration folder (Debian's nix-bin, and the official installer). */
export const DEFAULT_NIX_CONF_DIR = '/etc/nix';

/**
 * Pure: which files and variables Nix would read, in which order.
 * A variable that is set but empty counts as set, as in Nix: an empty
 * NIX_USER_CONF_FILES means no user files at all.
 */
export function nixConfLocations(env: NodeJS.ProcessEnv, homeDir: string): NixConfLocations {
  const confDir = confDirFrom(env.NIX_CONF_DIR);
  const split = (value: string) => value.split(':').filter((item) => item !== '');
  const fromVariable = env.NIX_USER_CONF_FILES !== undefined;
  const userFiles = fromVariable
    ? split(env.NIX_USER_CONF_FILES!)
    : [env.XDG_CONFIG_HOME ?? `${env.HOME ?? homeDir}/.config`, ...split(env.XDG_CONFIG_DIRS ?? '/etc/xdg')].map((dir) => `${dir}/nix/nix.conf`);
  return {
    confDir,
    systemFile: join(confDir, 'nix.conf'),
    userFiles,
    userFilesFrom: fromVariable ? 'NIX_USER_CONF_FILES' : 'XDG_CONFIG_HOME/XDG_CONFIG_DIRS',
    ...(env.NIX_CONFIG !== undefined && { nixConfig: env.NIX_CONFIG }),
    ...(env.NIX_REMOTE !== undefined && { nixRemote: env.NIX_REMOTE }),
  };
}

function confDirFrom(value: string | undefined): string {
  if (value === undefined) return DEFAULT_NIX_CONF_DIR;
  // Nix aborts on an empty or relative NIX_CONF_DIR (canonPath asserts an absolute path).
  if (!isAbsolute(value)) {
    throw new NixConfError(`NIX_CONF_DIR must be an absolute path, got ${JSON.stringify(value)} (Nix refuses it too)`);
  }
  const normal = normalize(value);
  return normal.length > 1 ? normal.replace(/\/+$/, '') : normal;
}
