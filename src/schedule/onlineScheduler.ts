import { IndexHeap } from './binaryHeap.js';
import { slotLimit } from './fit.js';
import { computeFitClasses, type FitClasses } from './fitClasses.js';
import { buildTopology, type Topology } from './jobGraph.js';
import { criticalPathIndices, optimisticWeights, upwardRanks } from './ranks.js';
import { book, choose, EPS, isOpen, slotView, type PlacementHosts, type SlotChoice, type SlotView } from './slotPlacement.js';
import type { Host, Job } from './types.js';

export interface SchedulerOptions {
  /** Hosts (ids) that may take non-builtin jobs; default: every host. builtin jobs keep local. */
  regularHosts?: readonly string[];
  /**
   * Hold slots for jobs that will be critical once their running deps end;
   * other jobs may use such a slot only if they end before it is needed.
   * Default off: on the shared nixpkgs DAGs slack placement alone did as well
   * or better, so planBuild tries both and the plan records the winner.
   */
  lookahead?: boolean;
  /**
   * Jobs with slack (finishing on a slower host does not push the projected
   * end) go to the slowest host that keeps them on time, leaving fast slots
   * to critical work. Default on.
   */
  slackPlacement?: boolean;
}

export interface Start {
  jobId: string;
  host: string;
}

export interface HostSlots {
  /** Slots for non-builtin jobs. */
  limit: number;
  /** Slots including the local builtin-only allowance. */
  builtinLimit: number;
  running: number;
  available: boolean;
}

const BLOCKED = 0;
const READY = 1;
const RUNNING = 2;
const DONE = 3;
const FAILED = 4;

/**
 * The scheduling policy shared by `plan` (on a simulated clock) and the live
 * build (on real completions). It keeps no clock: callers report events and
 * ask `next(now)` what to start.
 *
 * Priority is the upward rank (longest remaining path at the fastest fitting
 * speed). Placement is earliest-finish over expected slot-free times, so a
 * critical job waits for a fast host that frees soon rather than start on a
 * slow one; jobs with slack go to the slowest host that keeps them on time;
 * and high-rank jobs about to become ready hold a slot, which lower-rank jobs
 * may fill only if they end before it is needed.
 */
export class OnlineScheduler {
  readonly jobs: readonly Job[];
  readonly hosts: readonly Host[];
  private readonly topo: Topology;
  private readonly fit: FitClasses;
  private readonly hostIndex = new Map<string, number>();
  private readonly rank: Float64Array;
  /** Longest estimated path after each job (its upward rank without its own duration). */
  private readonly pathAfter: Float64Array;
  private readonly state: Uint8Array;
  private readonly missing: Int32Array;
  private readonly unstarted: Int32Array;
  private readonly hostOf: Int32Array;
  private readonly startAt: Float64Array;
  private readonly endAt: Float64Array;
  private readonly ready: IndexHeap[];
  private readonly soon: IndexHeap;
  private readonly inSoon: Uint8Array;
  /** At most one heap entry per ready job, so a scan never meets the same job twice. */
  private readonly inReady: Uint8Array;
  private readonly running: Array<Set<number>>;
  private readonly available: boolean[];
  private readonly regularLimit: number[];
  private readonly builtinLimit: number[];
  private readonly totalSlots: number;
  private readonly lookahead: boolean;
  private readonly placementHosts: PlacementHosts;
  private remainingWork = 0;
  private unfinished: number;

  constructor(jobs: Job[], hosts: Host[], options: SchedulerOptions = {}) {
    this.jobs = jobs;
    this.hosts = hosts;
    this.lookahead = options.lookahead ?? false;
    hosts.forEach((h, k) => this.hostIndex.set(h.id, k));
    const allowed = options.regularHosts ? new Set(options.regularHosts) : undefined;
    const regularAllowed = (h: Host) => h.transferLane === true || !allowed || allowed.has(h.id);
    this.topo = buildTopology(jobs);
    this.fit = computeFitClasses(jobs, hosts, regularAllowed);
    const weight = optimisticWeights(jobs, this.fit);
    this.rank = upwardRanks(this.topo, weight);
    this.pathAfter = this.rank.map((r, i) => r - weight[i]!);

    const n = jobs.length;
    this.state = new Uint8Array(n);
    this.missing = new Int32Array(n);
    this.unstarted = new Int32Array(n);
    this.hostOf = new Int32Array(n).fill(-1);
    this.startAt = new Float64Array(n);
    this.endAt = new Float64Array(n);
    this.inSoon = new Uint8Array(n);
    this.inReady = new Uint8Array(n);
    const rank = this.rank;
    const before = (a: number, b: number) => rank[a]! > rank[b]! || (rank[a] === rank[b] && a < b);
    this.ready = this.fit.hostsOf.map(() => new IndexHeap(before));
    this.soon = new IndexHeap(before);
    this.running = hosts.map(() => new Set<number>());
    this.available = hosts.map(() => true);
    this.regularLimit = hosts.map((h) => (regularAllowed(h) ? slotLimit(h, false) : 0));
    this.builtinLimit = hosts.map((h) => slotLimit(h, true));
    this.placementHosts = {
      speed: Float64Array.from(hosts, (h) => h.speedFactor),
      isLocal: hosts.map((h) => h.isLocal),
      slackPlacement: options.slackPlacement ?? true,
    };
    this.totalSlots = this.regularLimit.reduce((a, b) => a + b, 0);
    this.unfinished = n;
    for (let i = 0; i < n; i++) {
      const deps = this.topo.depStart[i + 1]! - this.topo.depStart[i]!;
      this.missing[i] = deps;
      this.unstarted[i] = deps;
      this.remainingWork += jobs[i]!.duration;
      if (deps === 0) this.makeReady(i);
    }
  }

  // ---- queries -------------------------------------------------------------

  /** Upward rank of a job (seconds of remaining path at the fastest fitting speeds). */
  rankOf(jobId: string): number {
    return this.rank[this.index(jobId)]!;
  }

  /**
   * The highest upward rank among ready jobs that could run on a host, if
   * any: what this run is waiting for there when other runners hold its slots.
   */
  bestReadyRank(hostId: string): number | undefined {
    const k = this.hostIdx(hostId);
    let best: number | undefined;
    for (let c = 0; c < this.ready.length; c++) {
      if (!this.fit.hostsOf[c]!.includes(k)) continue;
      if (this.fit.builtin[c] || this.regularLimit[k]! <= 0) continue;
      const i = this.head(c);
      if (i !== undefined && (best === undefined || this.rank[i]! > best)) best = this.rank[i]!;
    }
    return best;
  }

  criticalPath(): string[] {
    return criticalPathIndices(this.topo, this.rank).map((i) => this.jobs[i]!.id);
  }

  hostSlots(hostId: string): HostSlots {
    const k = this.hostIdx(hostId);
    return {
      limit: this.regularLimit[k]!,
      builtinLimit: this.builtinLimit[k]!,
      running: this.running[k]!.size,
      available: this.available[k]!,
    };
  }

  runningOn(hostId: string): string[] {
    return [...this.running[this.hostIdx(hostId)]!].map((i) => this.jobs[i]!.id);
  }

  /** Host a running job was given, if it is running. */
  hostOfJob(jobId: string): string | undefined {
    const i = this.index(jobId);
    return this.state[i] === RUNNING ? this.hosts[this.hostOf[i]!]!.id : undefined;
  }

  expectedEnd(jobId: string): number | undefined {
    const i = this.index(jobId);
    return this.state[i] === RUNNING ? this.endAt[i] : undefined;
  }

  /** Every job is finished or unrunnable. */
  isComplete(): boolean {
    return this.unfinished === 0;
  }

  /**
   * Seconds left, estimated: the longer of the projected critical path and
   * the remaining work spread over the available capacity.
   */
  estimatedRemaining(now: number): number {
    if (this.unfinished === 0) return 0;
    let capacity = 0;
    this.hosts.forEach((h, k) => {
      if (this.available[k]) capacity += Math.max(this.regularLimit[k]!, this.running[k]!.size) * h.speedFactor;
    });
    const byWork = capacity > 0 ? this.remainingWork / capacity : Infinity;
    return Math.max(this.projectedEnd(now) - now, byWork);
  }

  // ---- events --------------------------------------------------------------

  /**
   * Jobs to start now. They count as running from this moment (so a second
   * call does not hand them out again); `started` may then correct the start
   * time or host. Call after every event.
   */
  next(now: number): Start[] {
    const starts: Start[] = [];
    this.startBuiltins(now, starts);
    this.startRegular(now, starts);
    return starts;
  }

  /** The job really began on `host` at `now` (after `next` proposed it, or on the caller's own decision). */
  started(jobId: string, hostId: string, now: number): void {
    const i = this.index(jobId);
    const k = this.hostIdx(hostId);
    if (this.state[i] === RUNNING) {
      // Confirms (or moves) a start `next` proposed: the job leaves the host it was booked on.
      this.running[this.hostOf[i]!]!.delete(i);
      this.occupy(i, k, now);
    } else if (this.state[i] === READY) {
      this.assign(i, k, now);
    } else {
      throw this.misuse(`cannot start ${jobId}: it is not ready`);
    }
  }

  finished(jobId: string, _now: number): void {
    const i = this.index(jobId);
    if (this.state[i] !== RUNNING) throw this.misuse(`cannot finish ${jobId}: it is not running`);
    this.running[this.hostOf[i]!]!.delete(i);
    this.state[i] = DONE;
    this.unfinished--;
    this.remainingWork -= this.jobs[i]!.duration;
    const { childStart, children } = this.topo;
    for (let e = childStart[i]!; e < childStart[i + 1]!; e++) {
      const c = children[e]!;
      if (--this.missing[c]! === 0 && this.state[c] === BLOCKED) this.makeReady(c);
    }
  }

  /** A permanent failure: the job and everything depending on it will not run. Returns the dependents' ids. */
  failed(jobId: string): string[] {
    const i = this.index(jobId);
    if (this.state[i] === DONE || this.state[i] === FAILED) throw this.misuse(`cannot fail ${jobId}: it already ended`);
    if (this.state[i] === RUNNING) this.running[this.hostOf[i]!]!.delete(i);
    this.markFailed(i);
    const dependents: string[] = [];
    const stack = [i];
    const { childStart, children } = this.topo;
    while (stack.length > 0) {
      const j = stack.pop()!;
      for (let e = childStart[j]!; e < childStart[j + 1]!; e++) {
        const c = children[e]!;
        if (this.state[c] === FAILED) continue;
        this.markFailed(c);
        dependents.push(this.jobs[c]!.id);
        stack.push(c);
      }
    }
    return dependents;
  }

  /**
   * A running job goes back to the queue (its host died, or a transient
   * error): ready again, or blocked when a dep was meanwhile un-finished.
   */
  requeue(jobId: string): void {
    const i = this.index(jobId);
    if (this.state[i] !== RUNNING) throw this.misuse(`cannot requeue ${jobId}: it is not running`);
    this.running[this.hostOf[i]!]!.delete(i);
    this.hostOf[i] = -1;
    const { childStart, children } = this.topo;
    for (let e = childStart[i]!; e < childStart[i + 1]!; e++) this.unstarted[children[e]!]!++;
    if (this.missing[i]! > 0) this.state[i] = BLOCKED;
    else this.makeReady(i);
  }

  /**
   * A finished job must run again: the only copy of its outputs went with a
   * builder that died. It is ready (or blocked, if a dep is un-finished too)
   * and dependents that have not started wait for it again; running ones
   * keep running (they may already hold the outputs) and, if requeued,
   * wait for it.
   */
  unfinish(jobId: string): void {
    const i = this.index(jobId);
    if (this.state[i] !== DONE) throw this.misuse(`cannot unfinish ${jobId}: it has not finished`);
    this.unfinished++;
    this.remainingWork += this.jobs[i]!.duration;
    const { childStart, children } = this.topo;
    for (let e = childStart[i]!; e < childStart[i + 1]!; e++) {
      const c = children[e]!;
      this.missing[c]!++;
      this.unstarted[c]!++;
      // A stale heap entry stays behind; head() skips jobs that are not ready.
      if (this.state[c] === READY) this.state[c] = BLOCKED;
    }
    if (this.missing[i]! > 0) this.state[i] = BLOCKED;
    else this.makeReady(i);
  }

  /** An unavailable host gets no new jobs; jobs running there stay until finished or requeued. */
  setHostAvailable(hostId: string, available: boolean): void {
    this.available[this.hostIdx(hostId)] = available;
  }

  // ---- internals -----------------------------------------------------------

  private index(jobId: string): number {
    const i = this.topo.indexOf.get(jobId);
    if (i === undefined) throw this.misuse(`unknown job ${jobId}`);
    return i;
  }

  private hostIdx(hostId: string): number {
    const k = this.hostIndex.get(hostId);
    if (k === undefined) throw this.misuse(`unknown host ${hostId}`);
    return k;
  }

  /** The caller broke the scheduler's contract: a bug in offload (exit 70), never bad input. */
  private misuse(message: string): Error {
    return new Error(`scheduler: ${message}`);
  }

  private makeReady(i: number): void {
    this.state[i] = READY;
    this.enqueue(i);
  }

  private enqueue(i: number): void {
    if (this.inReady[i]) return;
    this.inReady[i] = 1;
    this.ready[this.fit.classOf[i]!]!.push(i);
  }

  private dequeue(c: number): void {
    const i = this.ready[c]!.pop();
    if (i !== undefined) this.inReady[i] = 0;
  }

  private markFailed(i: number): void {
    if (this.state[i] !== DONE && this.state[i] !== FAILED) {
      this.unfinished--;
      this.remainingWork -= this.jobs[i]!.duration;
    }
    this.state[i] = FAILED;
  }

  /** Bookkeeping for lookahead: children whose deps have now all started become "soon ready". */
  private markStarted(i: number): void {
    const { childStart, children } = this.topo;
    for (let e = childStart[i]!; e < childStart[i + 1]!; e++) {
      const c = children[e]!;
      if (--this.unstarted[c]! === 0 && this.missing[c]! > 0 && !this.inSoon[c]) {
        this.inSoon[c] = 1;
        this.soon.push(c);
      }
    }
  }

  /** A ready job starts on host k at `now`; `starts` collects what `next` proposes. */
  private assign(i: number, k: number, now: number, starts?: Start[]): void {
    this.markStarted(i);
    this.occupy(i, k, now);
    starts?.push({ jobId: this.jobs[i]!.id, host: this.hosts[k]!.id });
  }

  private occupy(i: number, k: number, now: number): void {
    this.state[i] = RUNNING;
    this.hostOf[i] = k;
    this.running[k]!.add(i);
    this.startAt[i] = now;
    this.endAt[i] = now + this.jobs[i]!.duration / this.hosts[k]!.speedFactor;
  }

  /** Pops a ready heap past entries that are no longer ready (requeue can leave duplicates). */
  private head(c: number): number | undefined {
    const heap = this.ready[c]!;
    for (;;) {
      const top = heap.peek();
      if (top === undefined || this.state[top] === READY) return top;
      this.dequeue(c);
    }
  }

  /** builtin jobs only ever run locally and are short: start them as soon as a local slot allows. */
  private startBuiltins(now: number, starts: Start[]): void {
    this.fit.hostsOf.forEach((hs, c) => {
      if (!this.fit.builtin[c]) return;
      for (const k of hs) {
        while (this.available[k] && this.running[k]!.size < this.builtinLimit[k]!) {
          const i = this.head(c);
          if (i === undefined) return;
          this.dequeue(c);
          this.assign(i, k, now, starts);
        }
      }
    });
  }

  private clampEnd(i: number, now: number): number {
    return Math.max(this.endAt[i]!, now + EPS);
  }

  /** Optimistic end of the build: every unfinished path at its fastest speed, capacity ignored. */
  private projectedEnd(now: number): number {
    let end = now;
    for (let c = 0; c < this.ready.length; c++) {
      const i = this.head(c);
      if (i !== undefined) end = Math.max(end, now + this.rank[i]!);
    }
    for (const set of this.running) {
      for (const i of set) end = Math.max(end, this.clampEnd(i, now) + this.pathAfter[i]!);
    }
    return end;
  }

  /** Each usable host's slots this round (null: the host takes no regular job now). */
  private slotViews(now: number): Array<SlotView[] | null> {
    return this.hosts.map((_, k) => {
      const limit = this.regularLimit[k]!;
      if (!this.available[k] || limit <= 0) return null;
      const busyUntil: number[] = [];
      for (const i of this.running[k]!) busyUntil.push(this.clampEnd(i, now));
      return slotView(busyUntil, limit, now);
    });
  }

  /** When a soon-ready job's last running dep is expected to end. */
  private readyAt(i: number, now: number): number {
    let t = now + EPS;
    const { depStart, deps } = this.topo;
    for (let e = depStart[i]!; e < depStart[i + 1]!; e++) {
      const d = deps[e]!;
      if (this.state[d] === RUNNING) t = Math.max(t, this.clampEnd(d, now));
    }
    return t;
  }

  /** Where job i goes this round if it is ready at `at` (slotPlacement.ts). */
  private choose(i: number, views: Array<SlotView[] | null>, at: number, now: number, projected: number): SlotChoice | null {
    const job = this.jobs[i]!;
    const toPlace = { duration: job.duration, preferLocalBuild: job.preferLocalBuild, deadline: projected - this.pathAfter[i]! + EPS };
    return choose(toPlace, this.fit.hostsOf[this.fit.classOf[i]!]!, views, at, now, this.placementHosts);
  }

  private startRegular(now: number, starts: Start[]): void {
    const views = this.slotViews(now);
    const open = new Uint8Array(this.hosts.length);
    let anyOpen = false;
    for (let k = 0; k < views.length; k++) {
      if (isOpen(views[k], now)) {
        open[k] = 1;
        anyOpen = true;
      }
    }
    if (!anyOpen) return;
    const classes: number[] = [];
    for (let c = 0; c < this.ready.length; c++) {
      if (!this.fit.builtin[c] && this.head(c) !== undefined) classes.push(c);
    }
    if (classes.length === 0) return;
    const projected = this.projectedEnd(now);
    const soon = this.lookahead ? this.takeSoon(now) : [];
    const putBack: number[] = [];
    let soonAt = 0;
    let budget = 2 * this.totalSlots + 32;
    const rank = this.rank;
    while (budget-- > 0) {
      let bestClass = -1;
      let bestJob = -1;
      for (const c of classes) {
        if (!this.classOpen(c, open)) continue;
        const i = this.head(c);
        if (i !== undefined && (bestJob < 0 || rank[i]! > rank[bestJob]! || (rank[i] === rank[bestJob] && i < bestJob))) {
          bestJob = i;
          bestClass = c;
        }
      }
      if (bestJob < 0) break;
      const upcoming = soon[soonAt];
      if (upcoming && rank[upcoming.job]! > rank[bestJob]!) {
        soonAt++;
        // Only a job that would be critical when it becomes ready is worth holding a slot for.
        if (upcoming.at + rank[upcoming.job]! < projected - EPS) continue;
        const o = this.choose(upcoming.job, views, upcoming.at, now, projected);
        if (o) {
          book(o, views[o.host]!, upcoming.at, now);
          open[o.host] = isOpen(views[o.host], now) ? 1 : 0;
        }
        continue;
      }
      this.dequeue(bestClass);
      const o = this.choose(bestJob, views, now, now, projected);
      if (o) {
        book(o, views[o.host]!, now, now);
        open[o.host] = isOpen(views[o.host], now) ? 1 : 0;
      }
      if (o && o.now) this.assign(bestJob, o.host, now, starts);
      else putBack.push(bestJob);
    }
    for (const i of putBack) this.enqueue(i);
    for (const p of soon) this.soon.push(p.job);
  }

  private classOpen(c: number, open: Uint8Array): boolean {
    for (const k of this.fit.hostsOf[c]!) if (open[k]) return true;
    return false;
  }

  /** The highest-rank soon-ready jobs (all deps started, some still running), at most one per slot. */
  private takeSoon(now: number): Array<{ job: number; at: number }> {
    const out: Array<{ job: number; at: number }> = [];
    while (out.length < this.totalSlots) {
      const i = this.soon.pop();
      if (i === undefined) break;
      if (this.state[i] !== BLOCKED || this.unstarted[i]! > 0 || this.missing[i] === 0) {
        this.inSoon[i] = 0;
        continue;
      }
      out.push({ job: i, at: this.readyAt(i, now) });
    }
    return out;
  }
}
