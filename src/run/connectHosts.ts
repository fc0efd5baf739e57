import { OffloadError } from '../errors/offloadError.js';
import type { ChannelSource } from './storeChannel.js';

/**
 * Reaches every planned builder before the first job, in parallel, so an
 * unreachable host is known (and its share planned elsewhere) before
 * anything is sent. The builders the first jobs go to get their first
 * channel ready in the pool; the others are only logged in to, and start
 * `nix-store --serve` (about 0.1 s of a builder's CPU) when a job asks.
 */
export async function openPlannedHosts(
  channels: ChannelSource,
  hosts: readonly string[],
  reach: { firstWave: ReadonlySet<string>; login: (host: string) => Promise<void> },
  onDown: (host: string, error: OffloadError) => void,
): Promise<void> {
  await Promise.all(
    hosts.map(async (host) => {
      try {
        if (reach.firstWave.has(host)) channels.release(host, await channels.acquire(host));
        else await reach.login(host);
      } catch (error) {
        if (!(error instanceof OffloadError)) throw error;
        onDown(host, error);
      }
    }),
  );
}
