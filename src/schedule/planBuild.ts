import { assertEveryJobFits, fits, isTransfer } from './fit.js';
import type { SchedulerOptions } from './onlineScheduler.js';
import { simulate } from './simulate.js';
import type { Host, Job, Plan } from './types.js';

export interface PlanOptions {
  /** Skip the trivial baselines (tests of the policy alone). */
  baselines?: boolean;
}

interface Candidate {
  name: string;
  regularHosts?: string[];
  lookahead?: boolean;
}

/** Above this many jobs the lookahead variant is not tried, to keep planning fast. */
const VARIANT_LIMIT = 20_000;
const LOOKAHEAD = 'offload+lookahead';

/**
 * Published results (PISA, Coleman & Krishnamachari) show list schedulers can
 * lose badly to "everything on one fast host", so both trivial baselines run
 * through the same scheduler on restricted host sets and the best one wins.
 */
function candidates(jobs: Job[], hosts: Host[]): Candidate[] {
  const regular = jobs.filter((j) => !j.isBuiltin && !isTransfer(j));
  const fitsAll = (h: Host) => regular.every((j) => fits(h, j));
  const out: Candidate[] = [{ name: 'offload' }];
  if (jobs.length <= VARIANT_LIMIT) out.push({ name: LOOKAHEAD, lookahead: true });
  const local = hosts.find((h) => h.isLocal);
  if (local && local.maxJobs > 0 && fitsAll(local)) out.push({ name: 'all-local', regularHosts: [local.id] });
  const single = hosts
    .filter((h) => !h.transferLane && h.maxJobs > 0 && fitsAll(h))
    .sort((a, b) => b.speedFactor - a.speedFactor || b.maxJobs - a.maxJobs)[0];
  if (single && single !== local) out.push({ name: `single-host ${single.id}`, regularHosts: [single.id] });
  return out;
}

/**
 * The dry-run plan: the policy on every host plus the baselines, best
 * makespan wins (ties keep the earlier candidate, so the full policy).
 * Throws NoHostFitsError before simulating if some job fits no host.
 */
export function planBuild(jobs: Job[], hosts: Host[], opts: PlanOptions = {}): Plan {
  assertEveryJobFits(jobs, hosts);
  const all = candidates(jobs, hosts).filter((c) => opts.baselines !== false || !c.regularHosts);
  let best: Plan | undefined;
  const makespans: Record<string, number> = {};
  for (const c of all) {
    const plan = simulate(jobs, hosts, {
      name: c.name,
      lookahead: c.lookahead ?? false,
      ...(c.regularHosts ? { regularHosts: c.regularHosts } : {}),
    });
    makespans[c.name] = plan.makespan;
    if (!best || plan.makespan < best.makespan) best = plan;
  }
  return { ...best!, candidates: makespans };
}

/** The scheduler options that reproduce `plan`'s winning policy. */
export function schedulerOptionsForPlan(plan: Plan): SchedulerOptions {
  return {
    lookahead: plan.policy === LOOKAHEAD,
    ...(plan.regularHosts ? { regularHosts: plan.regularHosts } : {}),
  };
}
