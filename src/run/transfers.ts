import { OffloadError } from '../errors/offloadError.js';
import { LOCAL_HOST } from '../schedule/types.js';
import type { PathLocations } from './pathLocations.js';
import type { ChannelSource, StoreChannel } from './storeChannel.js';

export interface TransferReport {
  /** Paths streamed to the target (from the local store or another builder). */
  sent: string[];
  /** Paths the target fetched from its own substituters. */
  substituted: string[];
}

/** A path a job needs is nowhere this run knows of; `lost` when the only hosts holding it went down. */
export class MissingPathError extends OffloadError {
  constructor(
    message: string,
    readonly lost: boolean,
  ) {
    super(message);
  }
}

/**
 * Moves store paths (with the part of their closure the target lacks) to
 * where a job needs them: from the local store, or streamed straight from
 * the builder that holds them into the target. Two jobs on one host that need
 * the same input share one transfer: a transfer waits for earlier ones into
 * the same host that overlap its closure, so imports always find their
 * references valid.
 */
export class PathTransfers {
  private readonly inFlight = new Map<string, Map<string, Promise<void>>>();

  constructor(
    private readonly locations: PathLocations,
    private readonly channels: ChannelSource,
    private readonly opts: { buildersUseSubstitutes: boolean },
  ) {}

  async ensure(target: string, targetChannel: StoreChannel, paths: string[]): Promise<TransferReport> {
    const report: TransferReport = { sent: [], substituted: [] };
    const wanted = paths.filter((p) => !this.locations.has(p, target));
    for (const [source, group] of this.groupBySource(wanted, target)) {
      const part = await this.copyGroup(source, target, targetChannel, group);
      report.sent.push(...part.sent);
      report.substituted.push(...part.substituted);
    }
    this.locations.addAll(paths, target);
    return report;
  }

  private groupBySource(paths: string[], target: string): Map<string, string[]> {
    const groups = new Map<string, string[]>();
    for (const p of paths) {
      const source = this.locations.sourceFor(p, target);
      if (source === undefined) {
        const lost = this.locations.wasLost(p);
        throw new MissingPathError(`${p} is needed on ${target} but no host holds it${lost ? ' any more (its builder went down)' : ''}.`, lost);
      }
      const group = groups.get(source) ?? [];
      group.push(p);
      groups.set(source, group);
    }
    return groups;
  }

  private async copyGroup(source: string, target: string, targetChannel: StoreChannel, paths: string[]): Promise<TransferReport> {
    if (source === target) return { sent: [], substituted: [] };
    const sourceChannel = await this.channels.acquire(source);
    let clean = false;
    try {
      const closure = [...(await sourceChannel.queryClosure(paths, false))];
      const report = await this.copyMissing(sourceChannel, target, targetChannel, closure);
      this.locations.addAll(closure, target);
      clean = true;
      return report;
    } finally {
      if (clean) this.channels.release(source, sourceChannel);
      else this.channels.discard(source, sourceChannel);
    }
  }

  private async copyMissing(sourceChannel: StoreChannel, target: string, targetChannel: StoreChannel, closure: string[]): Promise<TransferReport> {
    const valid = new Set(await targetChannel.queryValidPaths(closure, { lock: true }));
    let missing = closure.filter((p) => !valid.has(p));
    let substituted: string[] = [];
    if (missing.length > 0 && this.opts.buildersUseSubstitutes && target !== LOCAL_HOST) {
      const fetched = new Set(await this.substituteOn(target, targetChannel, missing));
      substituted = missing.filter((p) => fetched.has(p));
      missing = missing.filter((p) => !fetched.has(p));
    }
    const { mine, earlier } = this.claim(target, missing);
    // Registered before any await, so a transfer starting meanwhile waits for this one.
    const done = (async () => {
      await Promise.all(earlier);
      if (mine.length > 0) await this.stream(sourceChannel, targetChannel, mine);
    })();
    this.register(target, mine, done);
    await done;
    return { sent: mine, substituted };
  }

  /** The target's Nix substitutes what it can, on a channel that still substitutes (one that built something does not). */
  private async substituteOn(target: string, targetChannel: StoreChannel, paths: string[]): Promise<Iterable<string>> {
    if (targetChannel.substitutes !== false) return targetChannel.queryValidPaths(paths, { lock: true, substitute: true });
    const channel = await this.channels.acquire(target, { substitute: true });
    try {
      const valid = await channel.queryValidPaths(paths, { lock: true, substitute: true });
      this.channels.release(target, channel);
      return valid;
    } catch (error) {
      this.channels.discard(target, channel);
      throw error;
    }
  }

  /** Splits `missing` into paths this transfer sends and transfers already sending the rest. */
  private claim(target: string, missing: string[]): { mine: string[]; earlier: Promise<void>[] } {
    const flying = this.inFlight.get(target) ?? new Map<string, Promise<void>>();
    const earlier = new Set<Promise<void>>();
    const mine: string[] = [];
    for (const p of missing) {
      const pending = flying.get(p);
      if (pending) earlier.add(pending);
      else mine.push(p);
    }
    return { mine, earlier: [...earlier] };
  }

  private register(target: string, paths: string[], done: Promise<void>): void {
    let flying = this.inFlight.get(target);
    if (!flying) this.inFlight.set(target, (flying = new Map<string, Promise<void>>()));
    for (const p of paths) flying.set(p, done);
    const forget = () => {
      for (const p of paths) if (flying.get(p) === done) flying.delete(p);
    };
    done.then(forget, forget);
  }

  private async stream(sourceChannel: StoreChannel, targetChannel: StoreChannel, paths: string[]): Promise<void> {
    const exported = await sourceChannel.exportPaths(paths);
    await targetChannel.importPaths(exported);
  }
}
