import type { Machine } from '../config/machine.js';
import { ServeClient } from '../remote/serveClient.js';
import type { SshPool } from '../remote/sshPool.js';
import { LOCAL_HOST } from '../schedule/types.js';
import { openLocalStoreChannel } from '../store/localStoreChannel.js';
import type { ChannelOpener } from './channelPool.js';
import type { LocalPathInfos } from './localPathInfos.js';

/**
 * Serve channels for the executor: over the host's one SSH connection for a
 * builder, the local store's channel for the local machine (a local
 * `nix-store --serve --write`, started only for what Nix's database cannot
 * answer where it is read here), so both build through the same protocol.
 */
export function serveChannelOpener(
  ssh: SshPool,
  machines: readonly Machine[],
  /**
   * `localBuildsFromStoreDerivations`: asked when a local channel opens (see copyBackCheck.ts). `localInfos`: what local
   * channels answer from a cache. `localStore`: Nix's `store` setting once known, asked when a local channel opens (a
   * store opened in-process answers questions from its database: store/localStoreChannel.ts).
   */
  opts: { storeDir?: string; localBuildsFromStoreDerivations?: () => boolean; localInfos?: LocalPathInfos; localStore?: () => string | undefined; debug?: (message: string) => void } = {},
): ChannelOpener {
  const byName = new Map(machines.map((m) => [m.hostName, m]));
  const clientOptions = opts.storeDir ? { storeDir: opts.storeDir } : {};
  return async (host) => {
    // A nix-daemon that does not trust the user builds only from the .drv files in its store.
    const fromStore = opts.localBuildsFromStoreDerivations?.() ?? false;
    if (host === LOCAL_HOST) {
      const local = await openLocalStoreChannel({ store: opts.localStore?.(), ...clientOptions, buildFromStoreDerivations: fromStore, ...(opts.debug ? { debug: opts.debug } : {}) });
      return opts.localInfos ? opts.localInfos.wrap(local) : local;
    }
    const machine = byName.get(host);
    if (!machine) throw new Error(`no machine named ${host} is configured`);
    return ServeClient.open(await ssh.openServe(machine), clientOptions);
  };
}
