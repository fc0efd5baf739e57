import { OffloadError } from '../errors/offloadError.js';
import type { ChannelSource } from './storeChannel.js';

/**
 * Connects to every planned builder before the first job, in parallel, so
 * an unreachable host is known (and its share planned elsewhere) before
 * anything is sent, and each host's first channel is ready in the pool.
 */
export async function openPlannedHosts(
  channels: ChannelSource,
  hosts: readonly string[],
  onDown: (host: string, error: OffloadError) => void,
): Promise<void> {
  await Promise.all(
    hosts.map(async (host) => {
      try {
        channels.release(host, await channels.acquire(host));
      } catch (error) {
        if (!(error instanceof OffloadError)) throw error;
        onDown(host, error);
      }
    }),
  );
}
