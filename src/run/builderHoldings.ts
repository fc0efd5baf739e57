import type { ChannelSource } from './storeChannel.js';

export interface BuilderHoldings {
  /** Output path → the first builder (in `hosts` order) that holds it. */
  held: Map<string, string>;
  /** NAR sizes of the held paths, where the builder said. */
  narSize: Map<string, number>;
  /** Builders that had not answered by the deadline (their answers are not waited for). */
  late: string[];
}

/** How long a run waits for builders' answers at most before planning without them. */
export const BUILDER_QUERY_WAIT_MS = 2_000;

/** Where a builder's answers come from. */
export interface HoldingsSources {
  /** Serve channels: Nix's word on which paths are valid, and their sizes (a channel goes back to the pool for a job). */
  channels: ChannelSource;
  /**
   * Which of the paths are on the host's disk (builderPresence.ts), or
   * undefined when it could not tell. Only those are asked of Nix, so a
   * builder that holds none of them starts no `nix-store --serve` for the
   * question.
   */
  present?: (host: string, paths: readonly string[]) => Promise<readonly string[] | undefined>;
}

/**
 * Builders are caches too: one batched validity query per builder, about
 * the paths it has on disk (all of them, where that could not be told).
 * Builders that are slow or unreachable are not waited for beyond the
 * deadline; an error is theirs to report when a job needs them.
 */
export async function queryBuilderHoldings(sources: HoldingsSources, hosts: readonly string[], paths: readonly string[], waitMs = BUILDER_QUERY_WAIT_MS): Promise<BuilderHoldings> {
  const { channels } = sources;
  const answers = new Map<string, { valid: string[]; sizes: Map<string, number> }>();
  if (paths.length === 0 || hosts.length === 0) return { held: new Map(), narSize: new Map(), late: [] };
  const asks = hosts.map(async (host) => {
    const candidates = (await sources.present?.(host, paths)) ?? paths;
    if (candidates.length === 0) return void answers.set(host, { valid: [], sizes: new Map() });
    const channel = await channels.acquire(host);
    try {
      const valid = [...(await channel.queryValidPaths([...candidates]))];
      const sizes = new Map<string, number>();
      if (valid.length > 0) for (const info of await channel.queryPathInfos(valid)) sizes.set(info.path, info.narSize);
      channels.release(host, channel);
      answers.set(host, { valid, sizes });
    } catch (error) {
      channels.discard(host, channel);
      throw error;
    }
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
  await Promise.race([Promise.allSettled(asks), deadline]);
  clearTimeout(timer);
  const held = new Map<string, string>();
  const narSize = new Map<string, number>();
  for (const host of hosts) {
    const answer = answers.get(host);
    if (!answer) continue;
    for (const p of answer.valid) {
      if (held.has(p)) continue;
      held.set(p, host);
      const size = answer.sizes.get(p);
      if (size !== undefined) narSize.set(p, size);
    }
  }
  return { held, narSize, late: hosts.filter((h) => !answers.has(h)) };
}
