import { readNixConfig, type NixConfig, type ReadNixConfigOptions } from './nixConfig.js';

/**
 * The settings a nix-daemon judges an untrusted user's imports by: its own
 * nix.conf ($NIX_CONF_DIR/nix.conf, with its includes). The user's files
 * and NIX_CONFIG do not reach it: `trusted-public-keys` and `require-sigs`
 * are restricted settings, which the daemon takes only from trusted users.
 * (It also trusts the public halves of its own `secret-key-files`, which a
 * user cannot read; those are not listed here.)
 */
export function readDaemonNixConfig(options: Omit<ReadNixConfigOptions, 'env'> & { env?: NodeJS.ProcessEnv } = {}): Promise<NixConfig> {
  const env = options.env ?? process.env;
  return readNixConfig({
    ...options,
    env: { ...(env.NIX_CONF_DIR !== undefined && { NIX_CONF_DIR: env.NIX_CONF_DIR }), NIX_USER_CONF_FILES: '' },
  });
}
