import type { Machine } from '../config/machine.js';
import { ServeClient } from '../remote/serveClient.js';
import type { SshPool } from '../remote/sshPool.js';
import { LOCAL_HOST } from '../schedule/types.js';
import { spawnServe } from '../store/spawnServe.js';
import type { ChannelOpener } from './channelPool.js';
import type { LocalPathInfos } from './localPathInfos.js';

/**
 * Serve channels for the executor: over the host's one SSH connection for a
 * builder, a local `nix-store --serve --write` for the local machine, so
 * both build through the same protocol.
 */
export function serveChannelOpener(
  ssh: SshPool,
  machines: readonly Machine[],
  /** `localBuildsFromStoreDerivations`: asked when a local channel opens (see copyBackCheck.ts). `localInfos`: what local channels answer from a cache. */
  opts: { storeDir?: string; localBuildsFromStoreDerivations?: () => boolean; localInfos?: LocalPathInfos } = {},
): ChannelOpener {
  const byName = new Map(machines.map((m) => [m.hostName, m]));
  const clientOptions = opts.storeDir ? { storeDir: opts.storeDir } : {};
  return async (host) => {
    // A nix-daemon that does not trust the user builds only from the .drv files in its store.
    const fromStore = opts.localBuildsFromStoreDerivations?.() ?? false;
    if (host === LOCAL_HOST) {
      const local = await ServeClient.open(await spawnServe(), { ...clientOptions, buildFromStoreDerivations: fromStore });
      return opts.localInfos ? opts.localInfos.wrap(local) : local;
    }
    const machine = byName.get(host);
    if (!machine) throw new Error(`no machine named ${host} is configured`);
    return ServeClient.open(await ssh.openServe(machine), clientOptions);
  };
}
