import { formatPressure } from '../remote/builderPressure.js';
import type { RunEvent } from '../run/runEvents.js';
import type { HostProgress, ProgressState, RunningJob } from './progressView.js';
import { TransferProgress, type TransferState } from './transferProgress.js';

/**
 * Follows a run's events and answers "what does the live view show now":
 * per-host running jobs, counts, and the ETA. Pure: the caller feeds events
 * and asks for the state at a time, so it is tested without a clock.
 */

export interface TrackedJob {
  id: string;
  name: string;
  /** Estimated seconds on a speedFactor-1 host. */
  duration: number;
  deps: readonly string[];
}

export interface TrackedHost {
  id: string;
  maxJobs: number;
  speedFactor: number;
}

const TRANSFER_SHOWN_AFTER_S = 1;

type Status = 'queued' | 'running' | 'done' | 'failed' | 'skipped' | 'interrupted';

interface JobState {
  job: TrackedJob;
  status: Status;
  host?: string;
  startedAt?: number;
}

export class ProgressTracker {
  private readonly jobs = new Map<string, JobState>();
  /** Jobs in dependency order (dependencies first), for the ETA pass. */
  private readonly order: string[];
  private readonly dependents = new Map<string, string[]>();
  private readonly speed: Map<string, number>;
  private readonly down = new Map<string, string>();
  private readonly pressure = new Map<string, { text: string; loaded?: string }>();
  private readonly fastest: number;
  private readonly transfers = new TransferProgress();

  constructor(
    jobs: readonly TrackedJob[],
    private readonly hosts: readonly TrackedHost[],
    /** Where the plan put each job: its expected host while it is queued. */
    private readonly plannedHost: ReadonlyMap<string, string> = new Map(),
  ) {
    for (const job of jobs) this.jobs.set(job.id, { job, status: 'queued' });
    for (const job of jobs) {
      for (const dep of job.deps) if (this.jobs.has(dep)) push(this.dependents, dep, job.id);
    }
    this.order = dependencyOrder(jobs, this.jobs, this.dependents);
    this.speed = new Map(hosts.map((h) => [h.id, h.speedFactor]));
    this.fastest = Math.max(1e-9, ...hosts.filter((h) => h.maxJobs > 0).map((h) => h.speedFactor));
  }

  /** Expected seconds of a job on a host (the scheduler's cost model). */
  estimateOn(jobId: string, host: string): number | undefined {
    const state = this.jobs.get(jobId);
    if (!state) return undefined;
    return state.job.duration / (this.speed.get(host) ?? 1);
  }

  /** A transfer still moving, for a progress line. */
  transfer(transferId: number, now: number): TransferState | undefined {
    return this.transfers.get(transferId, now);
  }

  apply(event: RunEvent): void {
    this.transfers.apply(event);
    switch (event.type) {
      case 'jobStarted':
        this.set(event.jobId, { status: 'running', host: event.host, startedAt: event.time });
        break;
      case 'jobFinished': {
        const done = event.status === 'built' || event.status === 'fetched' || event.status === 'copied';
        // A fetch that fell back is settled for this pass; the build that replaces it is a job of the next one.
        const status: Status = done || event.status === 'fell-back' ? 'done' : event.status === 'requeued' ? 'queued' : event.status === 'failed' ? 'failed' : 'interrupted';
        this.set(event.jobId, { status, host: event.host });
        break;
      }
      case 'jobSkipped':
        this.set(event.jobId, { status: 'skipped' });
        break;
      case 'hostDown':
        this.down.set(event.host, event.reason);
        break;
      case 'hostBack':
        this.down.delete(event.host);
        break;
      case 'hostPressure':
        this.pressure.set(event.host, { text: formatPressure(event.pressure), ...(event.reasons.length > 0 ? { loaded: event.reasons.join(', ') } : {}) });
        break;
      case 'buildLog':
        break;
    }
  }

  state(now: number): ProgressState {
    const counts = { done: 0, running: 0, queued: 0, failed: 0, skipped: 0 };
    const running = new Map<string, RunningJob[]>();
    for (const s of this.jobs.values()) {
      if (s.status === 'done') counts.done++;
      else if (s.status === 'running') counts.running++;
      else if (s.status === 'failed') counts.failed++;
      else if (s.status === 'skipped') counts.skipped++;
      else counts.queued++;
      if (s.status === 'running' && s.host !== undefined) {
        const estimate = this.estimateOn(s.job.id, s.host);
        push(running, s.host, { name: s.job.name, elapsed: Math.max(0, now - (s.startedAt ?? now)), ...(estimate !== undefined ? { estimate } : {}) });
      }
    }
    const hosts = this.hosts
      .filter((h) => h.maxJobs > 0 || running.has(h.id))
      .map<HostProgress>((h) => ({
        id: h.id,
        slots: h.maxJobs,
        running: running.get(h.id) ?? [],
        ...(this.down.has(h.id) ? { down: this.down.get(h.id)! } : {}),
        ...(this.pressure.get(h.id)?.text ? { pressure: this.pressure.get(h.id)!.text } : {}),
        ...(this.pressure.get(h.id)?.loaded !== undefined ? { loaded: this.pressure.get(h.id)!.loaded! } : {}),
      }));
    const eta = this.eta(now);
    // A transfer shows once it has moved for a second: small ones would only flicker.
    const transfers = this.transfers.moving(now, TRANSFER_SHOWN_AFTER_S);
    return { hosts, counts, elapsed: now, ...(eta !== undefined ? { etaSeconds: eta } : {}), ...(transfers.length > 0 ? { transfers } : {}) };
  }

  /**
   * Seconds until the run should end: the longer of the remaining critical
   * path (running jobs count what is left of their estimate, queued ones
   * their estimate on the planned host) and the remaining work spread over
   * every slot still in rotation. Undefined when nothing is left.
   */
  eta(now: number): number | undefined {
    const remaining = new Map<string, number>();
    let work = 0;
    for (const s of this.jobs.values()) {
      const left = this.remaining(s, now);
      if (left === undefined) continue;
      remaining.set(s.job.id, left);
      work += left;
    }
    if (remaining.size === 0) return undefined;
    /** Remaining time from a job's start to the end of the longest path through it. */
    const pathFrom = new Map<string, number>();
    let longest = 0;
    for (let i = this.order.length - 1; i >= 0; i--) {
      const id = this.order[i]!;
      const left = remaining.get(id);
      if (left === undefined) continue;
      const after = Math.max(0, ...(this.dependents.get(id) ?? []).map((d) => pathFrom.get(d) ?? 0));
      pathFrom.set(id, left + after);
      longest = Math.max(longest, left + after);
    }
    const slots = this.hosts.filter((h) => !this.down.has(h.id)).reduce((n, h) => n + Math.max(0, h.maxJobs), 0);
    return Math.max(longest, slots > 0 ? work / slots : 0);
  }

  private remaining(s: JobState, now: number): number | undefined {
    if (s.status === 'running' && s.host !== undefined) {
      return Math.max(0, (this.estimateOn(s.job.id, s.host) ?? 0) - (now - (s.startedAt ?? now)));
    }
    if (s.status !== 'queued') return undefined;
    const planned = this.plannedHost.get(s.job.id);
    const speed = (planned !== undefined ? this.speed.get(planned) : undefined) ?? this.fastest;
    return s.job.duration / speed;
  }

  private set(jobId: string, change: Partial<JobState>): void {
    const s = this.jobs.get(jobId);
    if (s) Object.assign(s, change);
  }
}

/** Kahn's order over the tracked jobs; deps outside the set are ignored. */
function dependencyOrder(jobs: readonly TrackedJob[], known: ReadonlyMap<string, unknown>, dependents: ReadonlyMap<string, string[]>): string[] {
  const waiting = new Map(jobs.map((j) => [j.id, j.deps.filter((d) => known.has(d)).length]));
  const order = jobs.filter((j) => waiting.get(j.id) === 0).map((j) => j.id);
  for (let i = 0; i < order.length; i++) {
    for (const d of dependents.get(order[i]!) ?? []) {
      const left = waiting.get(d)! - 1;
      waiting.set(d, left);
      if (left === 0) order.push(d);
    }
  }
  return order;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
