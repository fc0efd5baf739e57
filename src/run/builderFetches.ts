import { OffloadError } from '../errors/offloadError.js';
import { LOCAL_HOST, TRANSFER_LANE, type Job } from '../schedule/types.js';
import type { FetchOutcome } from './localFetcher.js';
import type { PathLocations } from './pathLocations.js';
import type { RunEventListener } from './runEvents.js';
import type { JobRecord } from './runResult.js';
import type { ChannelSource, StoreChannel } from './storeChannel.js';

export interface BuilderFetchesInput {
  /** The fetch jobs marked `onBuilder`: not scheduled, fetched where a build needs them. */
  jobs: readonly Job[];
  locations: PathLocations;
  channels: ChannelSource;
  /** Fetches into the local store: for a build here, and when a builder cannot fetch for itself. */
  fetcher?: { fetch(paths: string[]): Promise<FetchOutcome> };
  record: (jobId: string) => JobRecord;
  /** Paths nothing could deliver: the run's next pass builds them (shared with the executor). */
  fellBack: Set<string>;
  interrupted: () => boolean;
  log: (line: string) => void;
  now: () => number;
  onEvent?: RunEventListener;
}

/**
 * Fetches that only builders need (builders-use-substitutes): when a build
 * starts on a builder, the builder is asked to substitute the fetches its
 * inputs need that no host holds yet (the serve protocol's validity query
 * with substitution on, as Nix's build hook lets a builder do), so their
 * bytes go from the cache to the builder and never through the local store.
 * A builder that cannot (its own substituters lack them, or it is
 * unreachable) gets them the old way: fetched here, then sent with the other
 * inputs. A build here fetches them here. Two builds on one host that need
 * the same fetch share it.
 */
export class BuilderFetches {
  private readonly units = new Map<string, Job>();
  private readonly unitOf = new Map<string, string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly reasons = new Map<string, string>();

  constructor(private readonly input: BuilderFetchesInput) {
    for (const job of input.jobs) {
      this.units.set(job.id, job);
      for (const p of job.transfer!.paths) this.unitOf.set(p, job.id);
    }
  }

  /** Ids of the fetches this instance manages (they are never scheduled). */
  has(jobId: string): boolean {
    return this.units.has(jobId);
  }

  /**
   * Brings to `host` what `inputs` need of these fetches. Resolves with the
   * paths no one could fetch (path → why); the build must not start then.
   */
  async forBuild(host: string, inputs: readonly string[]): Promise<Map<string, string>> {
    if (this.units.size === 0) return new Map();
    const wanted = this.unitsFor(host, inputs);
    if (wanted.length === 0) return new Map();
    const waits: Promise<void>[] = [];
    const mine: Job[] = [];
    for (const unit of wanted) {
      const flying = this.inFlight.get(flightKey(host, unit.id));
      if (flying) waits.push(flying);
      else mine.push(unit);
    }
    if (mine.length > 0) {
      const done = this.fetchBatch(host, mine);
      for (const unit of mine) this.inFlight.set(flightKey(host, unit.id), done);
      void done.finally(() => {
        for (const unit of mine) if (this.inFlight.get(flightKey(host, unit.id)) === done) this.inFlight.delete(flightKey(host, unit.id));
      });
      waits.push(done);
    }
    await Promise.all(waits);
    const { locations } = this.input;
    const failed = new Map<string, string>();
    for (const unit of wanted) {
      for (const p of unit.transfer!.paths) {
        if (!locations.has(p, host) && !locations.has(p, LOCAL_HOST)) failed.set(p, this.reasons.get(p) ?? 'it was not fetched');
      }
    }
    return failed;
  }

  /** The fetches (with the fetches of their references) that inputs need and no host holds. */
  private unitsFor(host: string, inputs: readonly string[]): Job[] {
    const { locations } = this.input;
    const stack: string[] = [];
    for (const p of inputs) {
      const unit = this.unitOf.get(p);
      if (unit !== undefined && locations.hostsOf(p).length === 0) stack.push(unit);
    }
    const out = new Map<string, Job>();
    for (let id = stack.pop(); id !== undefined; id = stack.pop()) {
      if (out.has(id)) continue;
      const unit = this.units.get(id)!;
      out.set(id, unit);
      for (const dep of unit.deps) {
        const d = this.units.get(dep);
        if (d && d.transfer!.paths.some((p) => !locations.has(p, host))) stack.push(dep);
      }
    }
    return [...out.values()];
  }

  private async fetchBatch(host: string, units: Job[]): Promise<void> {
    let left = units;
    if (host !== LOCAL_HOST) {
      const started = this.start(units, host);
      const { valid, error } = await this.substituteOn(host, units.flatMap((u) => u.transfer!.paths));
      left = [];
      for (const unit of units) {
        const paths = unit.transfer!.paths;
        if (paths.every((p) => valid.has(p))) {
          this.input.locations.addAll(paths, host);
          this.finish(unit, host, started, 'fetched');
        } else {
          left.push(unit);
          this.finish(unit, host, started, 'requeued', error ?? `${host} could not substitute it`);
        }
      }
      if (left.length === 0 || this.input.interrupted()) return;
      this.input.log(
        `offload: ${host} could not fetch ${names(left)} from its own substituters (${error ?? 'they do not have it, or it is not configured for them'}); fetching here and sending it`,
      );
    }
    await this.fetchHere(left);
  }

  /** The builder's Nix substitutes what it can; resolves with the paths valid there afterwards. */
  private async substituteOn(host: string, paths: string[]): Promise<{ valid: Set<string>; error?: string }> {
    const { channels } = this.input;
    let channel: StoreChannel | undefined;
    try {
      channel = await channels.acquire(host, { substitute: true });
      const valid = new Set(await channel.queryValidPaths(paths, { lock: true, substitute: true }));
      channels.release(host, channel);
      return { valid };
    } catch (error) {
      if (channel) channels.discard(host, channel);
      if (!(error instanceof OffloadError) && !this.input.interrupted()) throw error;
      return { valid: new Set(), error: error instanceof Error ? error.message : String(error) };
    }
  }

  private async fetchHere(units: Job[]): Promise<void> {
    const { fetcher, locations } = this.input;
    const started = this.start(units, TRANSFER_LANE);
    const paths = units.flatMap((u) => u.transfer!.paths);
    let failed: Map<string, string>;
    try {
      failed = fetcher ? (await fetcher.fetch(paths)).failed : new Map(paths.map((p) => [p, 'no cache is configured here']));
    } catch (error) {
      if (!(error instanceof OffloadError) && !this.input.interrupted()) throw error;
      failed = new Map(paths.map((p) => [p, error instanceof Error ? error.message : String(error)]));
    }
    for (const unit of units) {
      const missing = unit.transfer!.paths.filter((p) => failed.has(p));
      locations.addAll(
        unit.transfer!.paths.filter((p) => !failed.has(p)),
        LOCAL_HOST,
      );
      if (this.input.interrupted()) {
        this.finish(unit, TRANSFER_LANE, started, 'interrupted');
        continue;
      }
      if (missing.length === 0) {
        this.finish(unit, TRANSFER_LANE, started, 'fetched');
        continue;
      }
      for (const p of missing) {
        const reason = failed.get(p)!;
        this.reasons.set(p, reason);
        this.input.fellBack.add(p);
        this.input.log(`offload: ${unit.transfer!.from} could not provide ${p} (${reason}); building ${unit.name} instead`);
      }
      this.finish(unit, TRANSFER_LANE, started, 'fell-back', failed.get(missing[0]!));
    }
  }

  private start(units: Job[], host: string): number {
    const time = this.input.now();
    for (const unit of units) {
      const record = this.input.record(unit.id);
      Object.assign(record, { host, status: 'running', attempts: record.attempts + 1 });
      record.start ??= time;
      this.input.onEvent?.({ type: 'jobStarted', time, jobId: unit.id, name: unit.name, host, attempt: record.attempts, action: 'fetch' });
    }
    return time;
  }

  private finish(unit: Job, host: string, startedAt: number, status: 'fetched' | 'requeued' | 'fell-back' | 'interrupted', error?: string): void {
    const time = this.input.now();
    const record = this.input.record(unit.id);
    const { bytes, from } = unit.transfer!;
    // Refused by the builder: the same fetch goes on here, so the record waits for that outcome.
    if (status === 'requeued') record.status = 'pending';
    else Object.assign(record, { status, end: time, ...(error !== undefined ? { error } : {}) });
    this.input.onEvent?.({ type: 'jobFinished', time, jobId: unit.id, name: unit.name, host, status, seconds: time - startedAt, action: 'fetch', bytes, from, ...(error !== undefined ? { error } : {}) });
  }
}

function flightKey(host: string, unit: string): string {
  return `${host}\u0000${unit}`;
}

function names(units: Job[]): string {
  const shown = units.slice(0, 3).map((u) => u.name);
  return units.length > 3 ? `${shown.join(', ')} and ${units.length - 3} more` : shown.join(', ');
}
