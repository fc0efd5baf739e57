import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { NarHashCheck, PathInfo } from '../remote/serveClient.js';
import { keepFreedHeap } from '../remote/freedHeap.js';
import { UntrustedReplyError } from '../remote/untrustedReplyError.js';
import { LOCAL_HOST } from '../schedule/types.js';
import type { PathLocations } from './pathLocations.js';
import { localNars } from './localNars.js';
import { referenceOrder } from './referenceOrder.js';
import type { RunEventListener } from './runEvents.js';
import type { ChannelSource, StoreChannel } from './storeChannel.js';

export interface TransferReport {
  /** Paths streamed to the target (from the local store or another builder). */
  sent: string[];
  /** Paths the target fetched from its own substituters. */
  substituted: string[];
  /** NAR bytes streamed to the target. */
  bytes: number;
}

/** A path a job needs is nowhere this run knows of; `lost` when the only hosts holding it went down. */
export class MissingPathError extends OffloadError {
  constructor(
    message: string,
    readonly lost: boolean,
  ) {
    // Lost with a builder, or never anywhere this run knows of: the latter is a bug.
    super(message, lost ? ExitCode.hostsUnusable : ExitCode.internal);
  }
}

/** A channel on `host` that the caller holds (and releases or discards itself). */
export interface HeldChannel {
  host: string;
  channel: StoreChannel;
}

export interface PathTransferOptions {
  buildersUseSubstitutes: boolean;
  /**
   * The paths this run may receive from a builder: what it asked to be
   * built, and every path it already knows. A builder's closure reply that
   * names anything else is a lie (UntrustedReplyError). Without it, no check.
   */
  expected?: (path: string) => boolean;
  /** Transfer events (live view, NDJSON) and the clock they are stamped with. */
  onEvent?: RunEventListener;
  now?: () => number;
  /** The local store's files can be read here (store/storeInProcess.ts storeFilesReadable): uploads write NARs from them (localNars.ts). */
  readLocalFiles?: boolean;
}

/** Progress events per transfer at most this often. */
const PROGRESS_INTERVAL_S = 0.25;
/** A transfer this large streams enough short-lived buffers for glibc's heap trimming to cost (keepFreedHeap). */
const KEEP_FREED_HEAP_FROM = 8 * 1024 * 1024;

/**
 * Moves store paths (with the part of their closure the target lacks) to
 * where a job needs them: from the local store, or streamed straight from
 * the builder that holds them into the target. Two jobs on one host that need
 * the same input share one transfer: a transfer waits for earlier ones into
 * the same host that overlap its closure, so imports always find their
 * references valid.
 *
 * Nothing a builder says is taken on trust: its closure may only name paths
 * this run expects, its path infos only the paths asked about, with
 * references inside that closure, and each NAR must have the size and hash
 * its info gives (the size checked as it streams, so the receiving store
 * never sees the end of a NAR of another size; the hash by the receiving
 * store, which registers nothing that fails it).
 */
export class PathTransfers {
  private readonly inFlight = new Map<string, Map<string, Promise<void>>>();
  private nextId = 1;

  constructor(
    private readonly locations: PathLocations,
    private readonly channels: ChannelSource,
    private readonly opts: PathTransferOptions,
  ) {}

  /**
   * `held` is a channel the caller already holds on a source host (the
   * build's own, for its copy back): used for that host instead of one from
   * the pool, and left to the caller, who discards it if this throws.
   */
  async ensure(target: string, targetChannel: StoreChannel, paths: string[], context: { jobId?: string; held?: HeldChannel } = {}): Promise<TransferReport> {
    const report: TransferReport = { sent: [], substituted: [], bytes: 0 };
    const wanted = paths.filter((p) => !this.locations.has(p, target));
    for (const [source, group] of this.groupBySource(wanted, target)) {
      const held = context.held?.host === source ? context.held.channel : undefined;
      const part = await this.copyGroup(source, target, targetChannel, group, context.jobId, held);
      report.sent.push(...part.sent);
      report.substituted.push(...part.substituted);
      report.bytes += part.bytes;
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

  private async copyGroup(source: string, target: string, targetChannel: StoreChannel, paths: string[], jobId: string | undefined, held: StoreChannel | undefined): Promise<TransferReport> {
    if (source === target) return { sent: [], substituted: [], bytes: 0 };
    if (held) return this.copyFrom({ source, sourceChannel: held, target, targetChannel, jobId }, paths);
    const sourceChannel = await this.channels.acquire(source);
    let clean = false;
    try {
      const report = await this.copyFrom({ source, sourceChannel, target, targetChannel, jobId }, paths);
      clean = true;
      return report;
    } finally {
      if (clean) this.channels.release(source, sourceChannel);
      else this.channels.discard(source, sourceChannel);
    }
  }

  private async copyFrom(t: { source: string; sourceChannel: StoreChannel; target: string; targetChannel: StoreChannel; jobId: string | undefined }, paths: string[]): Promise<TransferReport> {
    const closure = [...(await t.sourceChannel.queryClosure(paths, false))];
    if (t.source !== LOCAL_HOST) this.checkClosure(t.source, paths, closure);
    const report = await this.copyMissing({ ...t, closure });
    this.locations.addAll(closure, t.target);
    return report;
  }

  /** A builder's closure holds what was asked for and nothing this run does not expect. */
  private checkClosure(source: string, asked: string[], closure: string[]): void {
    const replied = new Set(closure);
    for (const p of asked) {
      if (!replied.has(p)) throw new UntrustedReplyError(source, p, 'its closure reply leaves out a path it was asked about');
    }
    const expected = this.opts.expected;
    if (!expected) return;
    for (const p of closure) {
      if (!expected(p)) throw new UntrustedReplyError(source, p, 'its closure reply names a path this run never asked for');
    }
  }

  private async copyMissing(t: {
    source: string;
    sourceChannel: StoreChannel;
    target: string;
    targetChannel: StoreChannel;
    closure: string[];
    jobId: string | undefined;
  }): Promise<TransferReport> {
    const { target, targetChannel, closure } = t;
    const valid = new Set(await targetChannel.queryValidPaths(closure, { lock: true }));
    let missing = closure.filter((p) => !valid.has(p));
    let substituted: string[] = [];
    if (missing.length > 0 && this.opts.buildersUseSubstitutes && target !== LOCAL_HOST) {
      const fetched = new Set(await this.substituteOn(target, targetChannel, missing));
      substituted = missing.filter((p) => fetched.has(p));
      missing = missing.filter((p) => !fetched.has(p));
    }
    const { mine, earlier } = this.claim(target, missing);
    let bytes = 0;
    // Registered before any await, so a transfer starting meanwhile waits for this one.
    const done = (async () => {
      await Promise.all(earlier);
      if (mine.length > 0) bytes = await this.stream(t, mine);
    })();
    this.register(target, mine, done);
    await done;
    return { sent: mine, substituted, bytes };
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

  /**
   * The NARs of `paths`, dependencies first, from the source's store into
   * the target's, one stream with back-pressure end to end. The local
   * store hashes every NAR before it registers the path, so a builder's
   * NARs copied back are not hashed here too: the local store's refusal of
   * one is that builder's UntrustedReplyError (ServeClient.addNars). Between
   * two builders they are hashed here: the target's word that the source
   * lied is a builder's word, and would take an honest builder out of
   * rotation. Sizes and NAR structure are checked as the bytes stream by.
   */
  private async stream(t: { source: string; sourceChannel: StoreChannel; target: string; targetChannel: StoreChannel; closure: string[]; jobId: string | undefined }, paths: string[]): Promise<number> {
    const infos = await t.sourceChannel.queryPathInfos(paths);
    if (t.source !== LOCAL_HOST) checkInfos(t.source, paths, infos, new Set(t.closure));
    const ordered = referenceOrder(infos);
    const total = ordered.reduce((sum, info) => sum + info.narSize, 0);
    // 1 GiB copied back: 5.1-5.5 -> 3.3-4.1 s CPU of this process (page faults, brk calls 1065 -> 323).
    if (total >= KEEP_FREED_HEAP_FROM) keepFreedHeap();
    const progress = this.progress(t, ordered.length, total);
    try {
      const nars = t.source === LOCAL_HOST ? localNars(t.sourceChannel, ordered, this.opts.readLocalFiles === true) : t.sourceChannel.dumpNars(ordered, { hash: narHashCheck(t.target) });
      await t.targetChannel.addNars(nars, { onBytes: progress.add });
    } catch (error) {
      progress.finish(error);
      throw error;
    }
    progress.finish();
    return total;
  }

  private progress(t: { source: string; target: string; jobId: string | undefined }, paths: number, bytes: number): { add: (n: number) => void; finish: (error?: unknown) => void } {
    const { onEvent } = this.opts;
    const now = this.opts.now ?? (() => performance.now() / 1000);
    if (!onEvent) return { add: () => undefined, finish: () => undefined };
    const transferId = this.nextId++;
    const started = now();
    let done = 0;
    let reported = started;
    onEvent({ type: 'transferStarted', time: started, transferId, from: t.source, to: t.target, paths, bytes, ...(t.jobId ? { jobId: t.jobId } : {}) });
    return {
      add: (n) => {
        done += n;
        const time = now();
        if (time - reported < PROGRESS_INTERVAL_S) return;
        reported = time;
        onEvent({ type: 'transferProgress', time, transferId, bytes: done, total: bytes });
      },
      finish: (error) => {
        const time = now();
        const message = error === undefined ? undefined : error instanceof Error ? error.message : 'the transfer failed';
        onEvent({ type: 'transferFinished', time, transferId, from: t.source, to: t.target, bytes: done, seconds: time - started, ...(message !== undefined ? { error: message } : {}) });
      },
    };
  }
}

/** Who checks the hash of a builder's NAR on its way to `target` (see Transfers.stream; the local store's are not hashed). */
function narHashCheck(target: string): NarHashCheck {
  return target === LOCAL_HOST ? 'receiver' : 'here';
}

/** The source described every path asked about, and only those, with references inside its closure. */
function checkInfos(source: string, asked: string[], infos: PathInfo[], closure: Set<string>): void {
  const described = new Set(infos.map((info) => info.path));
  for (const p of asked) {
    if (!described.has(p)) throw new UntrustedReplyError(source, p, 'it listed the path in its closure but has no path info for it');
  }
  for (const info of infos) {
    for (const ref of info.references) {
      if (!closure.has(ref)) throw new UntrustedReplyError(source, ref, `its path info of ${info.path} names a reference outside the closure it gave`);
    }
  }
}
