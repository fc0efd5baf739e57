import { join } from 'node:path';

/** Folder holding the nix.conf of the local Nix that tests, the demo and benchmarks use. */
export const LOCAL_NIX_CONF_DIR = join(import.meta.dirname, 'local-nix');

/**
 * The environment for the local Nix of tests, the demo and benchmarks: the
 * machine's own store, opened directly (no daemon), and only the settings in
 * local-nix/nix.conf. NIX_CONF_DIR replaces /etc/nix, an empty
 * NIX_USER_CONF_FILES drops ~/.config/nix, and NIX_CONFIG is cleared, so no
 * setting of the machine or the user leaks in.
 */
export function localNixEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...base, ...localNixVariables };
}

export const localNixVariables = {
  NIX_REMOTE: 'local',
  NIX_CONF_DIR: LOCAL_NIX_CONF_DIR,
  NIX_USER_CONF_FILES: '',
  NIX_CONFIG: '',
} as const;
