import type { Derivation } from '../drv/derivation.js';
import type { BuildFailureKind } from '../remote/buildResult.js';
import type { CompressionSwitch } from '../remote/adaptiveCompression.js';
import { wantedOutputs } from '../graph/outputPaths.js';
import { OffloadError } from '../errors/offloadError.js';
import { LOCAL_HOST, TRANSFER_LANE, type Job } from '../schedule/types.js';
import type { FetchOutcome } from './localFetcher.js';
import { basicDerivation, buildInputs, outputPaths } from './buildInputs.js';
import { BuildLog } from './buildLog.js';
import { BuilderFetches } from './builderFetches.js';
import { classifyBuildResult, classifyError, decide, defaultRetryLimits, failedJob, type Attempt, type RetryLimits } from './failure.js';
import type { HostHealthOptions } from './hostHealth.js';
import { HostRotation } from './hostRotation.js';
import { PathLocations } from './pathLocations.js';
import type { PressureGate, PressureSample } from './pressureGate.js';
import type { SlotGate } from './slotGate.js';
import type { SlotLease } from '../slots/slotLeases.js';
import type { RunEventListener } from './runEvents.js';
import { localRootOutputs, type JobRecord, type RunResult } from './runResult.js';
import type { ChannelSource, StoreChannel } from './storeChannel.js';
import { PathTransfers, type HeldChannel, type TransferReport } from './transfers.js';

/** The part of the online scheduler the executor drives (the policy `plan` simulates). */
export interface LiveScheduler {
  next(now: number): Array<{ jobId: string; host: string }>;
  started(jobId: string, host: string, now: number): void;
  finished(jobId: string, now: number): void;
  /** Returns the dependents that can no longer be built. */
  failed(jobId: string): string[];
  requeue(jobId: string): void;
  /** A finished job must run again (the only copy of its outputs was lost). */
  unfinish(jobId: string): void;
  setHostAvailable(host: string, available: boolean): void;
  /** Remaining critical path of a job (seconds): its priority for a shared slot. */
  rankOf(jobId: string): number;
  /** The best rank among ready jobs that could run on a host, if any. */
  bestReadyRank(host: string): number | undefined;
}

export type CopyBack = 'needed' | 'all';

export interface ExecutorOptions {
  keepGoing: boolean;
  /** `needed`: outputs come back only for the roots and local jobs; `all`: every output, as Nix does. */
  copyBack: CopyBack;
  buildersUseSubstitutes: boolean;
  /** Sent with every build, as Nix's build hook sends its settings; the builder's Nix enforces them. */
  buildLimits?: { maxSilentTime: number; buildTimeout: number };
  retry?: RetryLimits;
  /** When a failing builder leaves the rotation and when it comes back. */
  hostHealth?: HostHealthOptions;
  /**
   * Builders whose post-build-hook may sign what they build. The
   * `nix-store --serve` that built a path keeps the path's info as it was
   * registered, before the hook signed it (Nix caches path infos per
   * process), so the copy back asks another channel, and the build's is
   * closed once the outputs are home: every later question goes to a
   * process that reads the signatures.
   */
  signsAfterBuild?: (host: string) => boolean;
  /** Uploads write NARs from the local store's files (PathTransferOptions.readLocalFiles). */
  readLocalFiles?: boolean;
}

export interface ExecutorInput {
  drvs: ReadonlyMap<string, Derivation>;
  roots: string[];
  /** Outputs wanted of a root (`drv^out`); a root not listed wants all. Only these come back. */
  rootOutputs?: ReadonlyMap<string, readonly string[]>;
  jobs: Job[];
  scheduler: LiveScheduler;
  channels: ChannelSource;
  /** Paths in the local store at the start that jobs may need: input sources and valid outputs. */
  localPaths: Iterable<string>;
  /** Hosts kept in reserve (not in the plan): brought in when a planned host goes down. */
  reserveHosts?: string[];
  options: ExecutorOptions;
  /** offload's messages, one line at a time (stderr); build logs arrive as `buildLog` events. */
  log: (line: string) => void;
  /** Seconds since the run started. */
  now: () => number;
  /** Progress events (live view, event streams, history). */
  onEvent?: RunEventListener;
  /** Build slots shared with other offload processes; without it only this run's own slots count. */
  slots?: SlotGate;
  /** Fetches into the local store (through Nix); needed when `jobs` has fetch jobs. */
  fetcher?: { fetch(paths: string[]): Promise<FetchOutcome> };
  /** Outputs builders held at the start: path → host. */
  held?: ReadonlyMap<string, string>;
  /** Fetches only builders need (`transfer.onBuilder`), not among `jobs`: each is fetched where a build needs it. */
  fetchesOnBuilders?: readonly Job[];
  /** Builders' own load; a loaded builder gets no new job until it recovers. */
  pressure?: PressureGate;
}

/** Seconds of one attempt: the build (once it ran) and the transfers in and out. */
interface AttemptTiming {
  buildSeconds?: number;
  transferSeconds: number;
}

/**
 * The live loop: asks the scheduler which ready job goes where, runs each
 * on its host (inputs in, build, outputs back when needed), and reports
 * completions back so the next choice sees the real clock. Failing builders
 * leave the rotation and come back after a back-off (hostRotation.ts); outputs
 * whose only copy is lost with a builder are built again.
 */
export class Executor {
  private readonly records = new Map<string, JobRecord>();
  private readonly locations = new PathLocations();
  private readonly transfers: PathTransfers;
  private readonly roots: Set<string>;
  private readonly retries = new Map<string, { transient: number; connectionLost: number }>();
  private readonly rotation: HostRotation;
  /** Output path → the job (in this run) that produces it. */
  private readonly producers = new Map<string, string>();
  private readonly dependents = new Map<string, string[]>();
  private readonly jobsById: Map<string, Job>;
  /** Paths a fetch or copy could not deliver: the next pass builds their derivations. */
  private readonly fellBack = new Set<string>();
  /** Jobs waiting on a fetch that fell back: not stuck, just for the next pass. */
  private readonly parked = new Set<string>();
  private readonly builderFetches: BuilderFetches;
  private slotPoll: NodeJS.Timeout | undefined;
  private pressureLook: NodeJS.Timeout | undefined;
  private stopping = false;
  private interrupted = false;
  /** A job or reconnect threw something that is not an OffloadError: a bug; the run stops and rethrows it. */
  private internalError: { error: unknown } | undefined;
  /** Something changed since the loop last looked: it must not sleep. */
  private woken = false;
  /** Ends the loop's current wait. */
  private resumeLoop: () => void = () => undefined;
  /** Something changed that may let the loop start a job, or end: it looks again at once. */
  private readonly wake = (): void => {
    this.woken = true;
    this.resumeLoop();
  };
  private stopListeningForSlots: (() => void) | undefined;

  constructor(private readonly input: ExecutorInput) {
    this.roots = new Set(input.roots);
    this.rotation = new HostRotation({
      setHostAvailable: (host, available) => input.scheduler.setHostAvailable(host, available),
      channels: input.channels,
      ...(input.options.hostHealth ? { options: input.options.hostHealth } : {}),
      reserves: input.reserveHosts ?? [],
      ...(input.slots ? { slots: input.slots } : {}),
      ...(input.pressure ? { pressure: input.pressure } : {}),
      log: input.log,
      now: input.now,
      ...(input.onEvent ? { onEvent: input.onEvent } : {}),
      onTakenOut: (host) => this.rebuildLost(this.locations.forgetHost(host)),
      resumeRun: () => this.wake(),
      onInternalError: (error) => {
        this.internalError ??= { error };
      },
    });
    this.locations.addAll(input.localPaths, LOCAL_HOST);
    for (const [path, host] of input.held ?? []) this.locations.add(path, host);
    this.jobsById = new Map(input.jobs.map((j) => [j.id, j]));
    const runPaths = new Set<string>();
    for (const drv of input.drvs.values()) for (const path of outputPaths(drv)) runPaths.add(path);
    this.transfers = new PathTransfers(this.locations, input.channels, {
      buildersUseSubstitutes: input.options.buildersUseSubstitutes,
      // What a builder may send back: outputs of the derivations this run knows, and paths it has already seen somewhere.
      expected: (path) => runPaths.has(path) || this.locations.known(path),
      now: input.now,
      ...(input.onEvent ? { onEvent: input.onEvent } : {}),
      ...(input.options.readLocalFiles ? { readLocalFiles: true } : {}),
    });
    for (const job of [...input.jobs, ...(input.fetchesOnBuilders ?? [])]) {
      const transfer = job.transfer ? { transfer: { paths: job.transfer.paths, bytes: job.transfer.bytes, from: job.transfer.from } } : {};
      this.records.set(job.id, { drvPath: job.id, name: job.name, action: job.action ?? 'build', ...transfer, host: '', status: 'pending', attempts: 0, sent: [], substituted: [] });
      if (job.action === undefined || job.action === 'build') for (const path of outputPaths(input.drvs.get(job.id)!)) this.producers.set(path, job.id);
      for (const dep of job.deps) this.dependents.set(dep, [...(this.dependents.get(dep) ?? []), job.id]);
    }
    this.builderFetches = new BuilderFetches({
      jobs: input.fetchesOnBuilders ?? [],
      locations: this.locations,
      channels: input.channels,
      ...(input.fetcher ? { fetcher: input.fetcher } : {}),
      record: (id) => this.records.get(id)!,
      fellBack: this.fellBack,
      interrupted: () => this.interrupted,
      log: input.log,
      now: input.now,
      ...(input.onEvent ? { onEvent: input.onEvent } : {}),
    });
  }

  async run(): Promise<RunResult> {
    const running = new Map<string, Promise<void>>();
    this.stopListeningForSlots = this.input.slots?.onFreed((host) => {
      for (const reopened of this.input.slots!.reopen(host)) this.rotation.refresh(reopened);
      this.wake();
    });
    // A pass after the first starts with what the builders' last look said.
    for (const host of this.input.pressure?.loadedHosts() ?? []) this.rotation.refresh(host);
    try {
      for (;;) {
        this.woken = false;
        if (!this.stopping) await this.startReady(running);
        else await this.input.slots?.settle(() => undefined);
        // Never wait idle for a host in back-off: with nothing running, the run is stuck. Hosts
        // busy with another runner, or loaded by others, are different: they free up, so wait for
        // them, but only while a job of this run is still waiting to start.
        const jobsWait = !this.stopping && [...this.records.values()].some((r) => r.status === 'pending');
        const waitForSlots = jobsWait && this.input.slots?.anyFull() === true;
        const waitForPressure = jobsWait && this.input.pressure?.anyLoaded() === true;
        // A job that ended while the exchange above was waiting has made others ready: go round again.
        const reconnects = this.rotation.pendingReconnects();
        if (running.size === 0 && reconnects.length === 0 && !waitForSlots && !waitForPressure && !this.woken) break;
        if (waitForSlots) this.recheckSlotsSoon();
        if (jobsWait) this.lookAtPressureSoon();
        if (!this.woken && this.input.slots?.hasNews() !== true) {
          const woken = new Promise<void>((resolve) => (this.resumeLoop = resolve));
          await Promise.race([...running.values(), ...reconnects, woken]);
        }
        if (this.internalError) this.stop();
      }
    } finally {
      this.rotation.stop();
      clearTimeout(this.slotPoll);
      clearTimeout(this.pressureLook);
      this.stopListeningForSlots?.();
    }
    if (this.internalError) throw this.internalError.error;
    return this.result();
  }

  /** SIGINT/SIGTERM: start nothing new; the caller closes the channels so running jobs end. */
  interrupt(): void {
    this.stop();
    this.interrupted = true;
    this.wake();
  }

  /**
   * A host's connection failed (the pool's 'down' event, or a connect
   * attempt): counted against the host, which may leave the rotation.
   */
  hostDown(host: string, error: unknown): void {
    this.rotation.hostDown(host, error);
  }

  compressionSwitched(host: string, change: CompressionSwitch): void {
    this.input.onEvent?.({ type: 'linkCompression', time: this.input.now(), host, ...change });
  }

  /** Start nothing new; running jobs end on their own (or when their channels close). */
  private stop(): void {
    this.stopping = true;
    this.rotation.stop();
  }

  /** A builder's pressure was read (pressureGate.ts calls this through buildCommand). */
  pressureSampled(host: string, sample: PressureSample, changed: boolean): void {
    this.input.onEvent?.({ type: 'hostPressure', time: this.input.now(), host, pressure: sample.pressure, reasons: sample.reasons, changed });
    this.rotation.refresh(host);
    this.wake();
  }

  /** Jobs wait: the builders' pressure is read again at most every few seconds. */
  private lookAtPressureSoon(): void {
    const pressure = this.input.pressure;
    if (!pressure || this.pressureLook) return;
    const wait = pressure.due(performance.now());
    this.pressureLook = setTimeout(() => {
      this.pressureLook = undefined;
      this.wake();
    }, wait);
  }

  /** A dead runner cannot announce its freed slots: look again at the full hosts after a while. */
  private recheckSlotsSoon(): void {
    if (this.slotPoll || !this.input.slots) return;
    this.slotPoll = setTimeout(() => {
      this.slotPoll = undefined;
      for (const host of this.input.slots?.reopen() ?? []) this.rotation.refresh(host);
      this.wake();
    }, this.input.slots.recheckMs);
  }

  /**
   * Outputs whose only copy went with a host: their producers run again if
   * a job that has not finished still needs them (and so on up, for
   * producers whose own inputs are gone too).
   */
  private rebuildLost(lost: string[]): void {
    const queue = [...lost];
    for (let path = queue.pop(); path !== undefined; path = queue.pop()) {
      const jobId = this.producers.get(path);
      const record = jobId ? this.records.get(jobId) : undefined;
      if (!jobId || record?.status !== 'built' || !this.stillNeeded(jobId)) continue;
      this.input.scheduler.unfinish(jobId);
      Object.assign(record, { status: 'pending' });
      delete record.end;
      this.input.log(`offload: the only copy of ${record.name}'s outputs was lost with ${record.host}; building it again`);
      for (const input of buildInputs(this.input.drvs.get(jobId)!, this.input.drvs)) {
        if (this.locations.hostsOf(input).length === 0) queue.push(input);
      }
    }
  }

  private stillNeeded(jobId: string): boolean {
    return (this.dependents.get(jobId) ?? []).some((id) => {
      const status = this.records.get(id)?.status;
      return status === 'pending' || status === 'running';
    });
  }

  /**
   * Starts what the scheduler offers, with one exchange of shared slots per
   * pass. A job whose host turns out to be full (other runners hold its
   * slots, or wait there with more urgent jobs) goes back to the queue and
   * the host is hidden, so asking again may place the job elsewhere.
   */
  private async startReady(running: Map<string, Promise<void>>): Promise<void> {
    const { scheduler, slots } = this.input;
    for (let pass = 0, blocked = true; blocked && pass < 8; pass++) {
      blocked = false;
      const now = this.input.now();
      const starts = scheduler.next(now);
      for (const { jobId, host } of starts) scheduler.started(jobId, host, now);
      const leases = slots
        ? await slots.take(
            starts.map(({ jobId, host }) => ({ host, priority: scheduler.rankOf(jobId) })),
            (host) => scheduler.bestReadyRank(host),
          )
        : starts.map(() => null);
      starts.forEach(({ jobId, host }, i) => {
        const lease = leases[i];
        if (lease === undefined) {
          scheduler.requeue(jobId);
          this.rotation.refresh(host);
          blocked = true;
          return;
        }
        this.start(running, jobId, host, lease ?? undefined);
      });
      if (this.stopping) break;
    }
    await slots?.settle((host) => scheduler.bestReadyRank(host));
  }

  private start(running: Map<string, Promise<void>>, jobId: string, host: string, lease: SlotLease | undefined): void {
    let givenBack = false;
    // The next exchange of shared slots reuses the lease for another job on this host, or frees it.
    const giveBack = () => {
      if (givenBack || !lease) return;
      givenBack = true;
      this.input.slots?.giveBack(lease);
    };
    const done: Promise<void> = this.runJob(jobId, host, giveBack)
      .catch((error: unknown) => {
        this.internalError ??= { error };
      })
      // A requeued job may already run again under the same id when this attempt's promise settles.
      .finally(() => {
        giveBack();
        if (running.get(jobId) === done) running.delete(jobId);
        this.wake();
      });
    running.set(jobId, done);
  }

  private async runJob(jobId: string, host: string, giveBackSlot: () => void): Promise<void> {
    const record = this.records.get(jobId)!;
    if ((this.jobsById.get(jobId)?.action ?? 'build') === 'build' && !(await this.fetchOnHost(jobId, host, record))) return;
    record.host = host;
    record.status = 'running';
    record.start ??= this.input.now();
    record.attempts += 1;
    const startedAt = this.input.now();
    const action = this.jobsById.get(jobId)?.action ?? 'build';
    this.input.onEvent?.({ type: 'jobStarted', time: startedAt, jobId, name: record.name, host, attempt: record.attempts, action });
    if (action !== 'build') {
      await this.runTransfer(jobId, record, startedAt);
      return;
    }
    const log = new BuildLog();
    const timing: AttemptTiming = { transferSeconds: 0 };
    const attempt = await this.attempt(jobId, host, log, record, timing);
    // Before the job is settled, so the exchange that follows can hand the slot to the next job.
    giveBackSlot();
    log.end();
    const status = this.settle(jobId, host, attempt, log);
    const time = this.input.now();
    const error = 'message' in attempt ? attempt.message : undefined;
    this.input.onEvent?.({
      type: 'jobFinished',
      time,
      jobId,
      name: record.name,
      host,
      status,
      seconds: time - startedAt,
      ...timing,
      ...(error !== undefined ? { error } : {}),
    });
  }

  /** `timing` gets the seconds spent building and moving paths, so history can keep them apart. */
  private async attempt(jobId: string, host: string, log: BuildLog, record: JobRecord, timing: AttemptTiming): Promise<Attempt> {
    const drv = this.input.drvs.get(jobId)!;
    const now = this.input.now;
    let channel: StoreChannel | undefined;
    try {
      channel = await this.input.channels.acquire(host);
      const inputsFrom = now();
      const report = await this.transfers.ensure(host, channel, buildInputs(drv, this.input.drvs), { jobId });
      timing.transferSeconds += now() - inputsFrom;
      noteTransfers(record, report);
      const onEvent = this.input.onEvent;
      const onLog = (line: string) => {
        log.write(`${line}\n`);
        onEvent?.({ type: 'buildLog', time: this.input.now(), jobId, host, line });
      };
      // The copy back's local nix-store starts while the builder builds, rather than after (store/localStoreChannel.ts).
      if (this.copiesBack(drv, host)) this.input.channels.prepare?.(LOCAL_HOST);
      const buildFrom = now();
      const result = await channel.buildDerivation(jobId, basicDerivation(drv, this.input.drvs), { onLog, ...this.input.options.buildLimits });
      timing.buildSeconds = now() - buildFrom;
      const attempt = classifyBuildResult(result);
      // Kept open (its temporary roots hold the outputs) until they are home, but never asked about them.
      const stale = attempt.kind === 'built' && this.input.options.signsAfterBuild?.(host) === true;
      if (attempt.kind === 'built') {
        const outputsFrom = now();
        // The outputs come back over the build's own channel, now free: a new `nix-store --serve` on the builder cost ~60 ms here.
        await this.placeOutputs(drv, host, jobId, stale ? undefined : channel);
        timing.transferSeconds += now() - outputsFrom;
      }
      if (stale) this.input.channels.discard(host, channel);
      else this.input.channels.release(host, channel);
      return attempt;
    } catch (error) {
      if (channel) this.input.channels.discard(host, channel);
      const attempt = classifyError(error, this.interrupted);
      if (!attempt) throw error;
      return attempt;
    }
  }

  /**
   * A fetch (through Nix, into the local store) or a copy from the builder
   * that holds the outputs. What cannot be delivered is built instead (Nix's
   * `fallback`): one warning naming the source and the path, and the jobs
   * waiting for it wait for the next pass, which builds it.
   */
  private async runTransfer(jobId: string, record: JobRecord, startedAt: number): Promise<void> {
    const transfer = record.transfer!;
    let missing: Map<string, string>;
    try {
      missing = record.action === 'fetch' ? await this.fetch(transfer.paths) : await this.copyHere(transfer.paths, jobId);
    } catch (error) {
      const attempt = classifyError(error, this.interrupted);
      if (attempt?.kind === 'refused') {
        // Built elsewhere or copied again, the path meets the same refusal (a missing signature, a full disk).
        const now = this.input.now();
        this.fail(jobId, TRANSFER_LANE, attempt.message, [], now);
        this.input.onEvent?.({ type: 'jobFinished', time: now, jobId, name: record.name, host: TRANSFER_LANE, seconds: now - startedAt, action: record.action!, bytes: transfer.bytes, from: transfer.from, status: 'failed', error: attempt.message });
        return;
      }
      if (this.interrupted) missing = new Map(transfer.paths.map((p) => [p, 'interrupted']));
      else if (error instanceof OffloadError) missing = new Map(transfer.paths.map((p) => [p, error.message]));
      else throw error;
    }
    const now = this.input.now();
    const base = { type: 'jobFinished' as const, time: now, jobId, name: record.name, host: TRANSFER_LANE, seconds: now - startedAt, action: record.action!, bytes: transfer.bytes, from: transfer.from };
    if (this.interrupted) {
      Object.assign(record, { status: 'interrupted', end: now });
      this.input.onEvent?.({ ...base, status: 'interrupted' });
      return;
    }
    if (missing.size === 0) {
      this.locations.addAll(transfer.paths, LOCAL_HOST);
      this.input.scheduler.finished(jobId, now);
      Object.assign(record, { status: record.action === 'fetch' ? 'fetched' : 'copied', end: now });
      this.input.onEvent?.({ ...base, status: record.action === 'fetch' ? 'fetched' : 'copied' });
      return;
    }
    for (const [path, reason] of missing) {
      this.fellBack.add(path);
      this.input.log(`offload: ${transfer.from} could not provide ${path} (${reason}); building ${record.name} instead`);
    }
    for (const path of transfer.paths) if (!missing.has(path)) this.locations.add(path, LOCAL_HOST);
    Object.assign(record, { status: 'fell-back', end: now, error: [...missing.values()][0] });
    for (const id of this.input.scheduler.failed(jobId)) this.parked.add(id);
    this.input.onEvent?.({ ...base, status: 'fell-back', error: record.error! });
  }

  /**
   * Before a build: the fetches only builders need that its inputs lack,
   * fetched on its host. False when one could not be fetched: the build
   * then waits for the next pass, which builds what was not fetched.
   */
  private async fetchOnHost(jobId: string, host: string, record: JobRecord): Promise<boolean> {
    const failed = await this.builderFetches.forBuild(host, buildInputs(this.input.drvs.get(jobId)!, this.input.drvs));
    if (failed.size === 0) return true;
    if (this.interrupted) {
      Object.assign(record, { status: 'interrupted', end: this.input.now() });
      return false;
    }
    this.parked.add(jobId);
    for (const id of this.input.scheduler.failed(jobId)) this.parked.add(id);
    return false;
  }

  private async fetch(paths: string[]): Promise<Map<string, string>> {
    if (!this.input.fetcher) throw new Error('a fetch job without a fetcher');
    return (await this.input.fetcher.fetch(paths)).failed;
  }

  /** Brings `paths` into the local store from wherever they are; a channel that failed is not reused. */
  private async copyHere(paths: string[], jobId?: string, held?: HeldChannel): Promise<Map<string, string>> {
    const local = await this.input.channels.acquire(LOCAL_HOST);
    try {
      await this.transfers.ensure(LOCAL_HOST, local, paths, { ...(jobId ? { jobId } : {}), ...(held ? { held } : {}) });
    } catch (error) {
      this.input.channels.discard(LOCAL_HOST, local);
      throw error;
    }
    this.input.channels.release(LOCAL_HOST, local);
    return new Map();
  }

  /** Where this run left outputs on builders (path → one host holding it): what a next pass can copy. */
  heldOnBuilders(): Map<string, string> {
    return this.locations.remoteHolders();
  }

  /** Whether a build of `drv` on `host` brings outputs home (placeOutputs). */
  private copiesBack(drv: Derivation, host: string): boolean {
    return host !== LOCAL_HOST && (this.input.options.copyBack === 'all' || this.roots.has(drv.drvPath));
  }

  /** Outputs stay on the builder unless they are wanted outputs of a root (or `--copy-back all`). */
  private async placeOutputs(drv: Derivation, host: string, jobId: string, channel: StoreChannel | undefined): Promise<void> {
    const outputs = outputPaths(drv);
    this.locations.addAll(outputs, host);
    if (host === LOCAL_HOST) return;
    const wanted = this.input.options.copyBack === 'all' ? outputs : this.roots.has(drv.drvPath) ? wantedOutputs(drv, this.input.rootOutputs?.get(drv.drvPath)).map(([, path]) => path) : [];
    if (wanted.length > 0) await this.copyHere(wanted, jobId, channel ? { host, channel } : undefined);
  }

  private settle(jobId: string, host: string, attempt: Attempt, log: BuildLog): 'built' | 'failed' | 'interrupted' | 'requeued' {
    const { scheduler } = this.input;
    const record = this.records.get(jobId)!;
    const now = this.input.now();
    if (attempt.kind === 'built') {
      scheduler.finished(jobId, now);
      this.rotation.succeeded(host);
      Object.assign(record, { status: 'built', end: now });
      return 'built';
    }
    if (attempt.kind === 'interrupted') {
      Object.assign(record, { status: 'interrupted', end: now });
      return 'interrupted';
    }
    const counts = this.retries.get(jobId) ?? { transient: 0, connectionLost: 0 };
    if (attempt.kind === 'transient') counts.transient += 1;
    if (attempt.kind === 'connectionLost') counts.connectionLost += 1;
    this.retries.set(jobId, counts);
    // A builder that keeps answering "transient failure" is counted like one that keeps dropping connections.
    if (attempt.kind === 'transient') this.rotation.hostFailed(host, 'lost', `${record.name}: ${attempt.message}`);
    if (attempt.kind === 'hostUnusable') this.rotation.hostFailed(attempt.host, attempt.failure, attempt.message);
    if (decide(attempt, counts, this.input.options.retry ?? defaultRetryLimits) === 'requeue') {
      this.input.log(`offload: ${record.name} on ${host}: ${attempt.message}; trying again`);
      record.status = 'pending';
      scheduler.requeue(jobId);
      return 'requeued';
    }
    this.fail(jobId, host, attempt.message, log.lastLines(), now, attempt.kind === 'buildFailed' ? attempt.failure : 'other');
    return 'failed';
  }

  private fail(jobId: string, host: string, message: string, logTail: string[], now: number, failure: BuildFailureKind = 'other'): void {
    const record = this.records.get(jobId)!;
    Object.assign(record, { status: 'failed', end: now, error: message, logTail, failure });
    const skipped = this.input.scheduler.failed(jobId);
    for (const id of skipped) {
      const dependent = this.records.get(id);
      if (dependent && dependent.status === 'pending') {
        Object.assign(dependent, { status: 'skipped', error: `needs ${jobId}, which failed` });
        this.input.onEvent?.({ type: 'jobSkipped', time: now, jobId: id, name: dependent.name, reason: dependent.error! });
      }
    }
    const lines = [`offload: ${failedJob({ action: record.action, jobId, host, from: record.transfer?.from })} failed: ${message}`];
    if (logTail.length > 0) lines.push(`last ${logTail.length} log lines of ${record.name}:`, ...logTail.map((l) => `  ${l}`));
    if (skipped.length > 0) lines.push(`skipped ${skipped.length} dependent derivation${skipped.length === 1 ? '' : 's'}: ${skipped.map((id) => this.records.get(id)?.name ?? id).join(', ')}`);
    for (const line of lines) this.input.log(line);
    if (!this.input.options.keepGoing) this.stop();
  }

  private result(): RunResult {
    const records = [...this.records.values()];
    const pending = records.filter((r) => r.status === 'pending');
    for (const r of pending) r.status = 'not-started';
    // Fetches builders make are not scheduled: one still pending was needed by no build that started.
    const unexplained = pending.filter((r) => !this.parked.has(r.drvPath) && !this.builderFetches.has(r.drvPath));
    const stuck =
      unexplained.length > 0 && !this.stopping
        ? { jobs: unexplained.map((r) => r.drvPath), reason: this.stuckReason() }
        : undefined;
    const makespan = this.input.now();
    const hosts = this.rotation.troubles(makespan);
    return {
      records,
      outputs: localRootOutputs(this.input.roots, this.input.drvs, (p) => this.locations.has(p, LOCAL_HOST), this.input.rootOutputs),
      makespan,
      interrupted: this.interrupted,
      ...(stuck ? { stuck } : {}),
      ...(hosts.length > 0 ? { hosts } : {}),
      ...(this.fellBack.size > 0 ? { fellBack: [...this.fellBack] } : {}),
    };
  }

  private stuckReason(): string {
    const out = this.rotation.troubles(this.input.now()).filter((t) => t.outAtEnd);
    if (out.length === 0) return 'no available machine fits them';
    return `no available machine fits them (${out.map((t) => `${t.host} is down: ${t.reason}`).join('; ')})`;
  }

}

function noteTransfers(record: JobRecord, report: TransferReport): void {
  record.sent = report.sent;
  record.substituted = report.substituted;
}
