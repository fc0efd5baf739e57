import { IndexHeap } from './binaryHeap.js';
import { OnlineScheduler, type SchedulerOptions, type Start } from './onlineScheduler.js';
import { lowerBound } from './ranks.js';
import type { Assignment, Host, Job, Plan } from './types.js';

/** Anything that hands out starts the way OnlineScheduler does. */
export interface Policy {
  next(now: number): Start[];
  finished(jobId: string, now: number): void;
  isComplete(): boolean;
  criticalPath(): string[];
}

/**
 * Runs a policy on a simulated clock where every job takes exactly
 * duration / speedFactor. Assignments come out in start order.
 */
export function runOnClock(policy: Policy, jobs: Job[], hosts: Host[], name: string): Plan {
  const speed = new Map(hosts.map((h) => [h.id, h.speedFactor]));
  const index = new Map(jobs.map((j, i) => [j.id, i]));
  const endAt = new Float64Array(jobs.length);
  const events = new IndexHeap((a, b) => endAt[a]! < endAt[b]! || (endAt[a] === endAt[b] && a < b));
  const assignments: Assignment[] = [];
  let now = 0;
  for (;;) {
    for (const s of policy.next(now)) {
      const i = index.get(s.jobId)!;
      const end = now + jobs[i]!.duration / speed.get(s.host)!;
      endAt[i] = end;
      events.push(i);
      assignments.push({ jobId: s.jobId, host: s.host, start: now, end });
    }
    const first = events.pop();
    if (first === undefined) break;
    now = endAt[first]!;
    policy.finished(jobs[first]!.id, now);
    while (events.size > 0 && endAt[events.peek()!]! <= now) policy.finished(jobs[events.pop()!]!.id, now);
  }
  if (!policy.isComplete()) {
    // A bug in offload (exit 70), never bad input.
    throw new Error(`simulation of ${name} stalled with jobs left unscheduled (a scheduler bug)`);
  }
  const makespan = assignments.reduce((m, a) => Math.max(m, a.end), 0);
  const used = new Set(assignments.map((a) => a.host));
  return {
    makespan,
    assignments,
    criticalPath: policy.criticalPath(),
    policy: name,
    candidates: { [name]: makespan },
    lowerBound: lowerBound(jobs, hosts),
    hosts: hosts.filter((h) => used.has(h.id)).map((h) => h.id),
  };
}

export interface SimulateOptions extends SchedulerOptions {
  /** Name for Plan.policy; default `offload`. */
  name?: string;
}

/** The OnlineScheduler policy on a simulated clock. */
export function simulate(jobs: Job[], hosts: Host[], opts: SimulateOptions = {}): Plan {
  const plan = runOnClock(new OnlineScheduler(jobs, hosts, opts), jobs, hosts, opts.name ?? 'offload');
  if (opts.regularHosts) plan.regularHosts = [...opts.regularHosts];
  return plan;
}
