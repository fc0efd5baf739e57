import { OnlineScheduler } from '../schedule/onlineScheduler.js';
import { schedulerOptionsForPlan } from '../schedule/planBuild.js';
import type { Host, Job, Plan } from '../schedule/types.js';

export interface LivePlacement {
  /** Builders to connect to before the first job. */
  planned: string[];
  /** Builders the plan leaves out: held back, brought in when a planned one goes down. */
  reserves: string[];
  /** OnlineScheduler's regularHosts: the plan's choice plus the reserves (which start unavailable). */
  regularHosts: string[];
}

/**
 * The live run follows the plan's host choice (a baseline that wins with
 * one host keeps the run on it), but keeps the other builders as reserves:
 * a run should not fail for want of a host that is configured and fits.
 */
export function livePlacement(plan: Plan, hosts: readonly Host[]): LivePlacement {
  const regular = plan.regularHosts ?? plan.hosts;
  const reserves = hosts.filter((h) => !h.isLocal && !plan.hosts.includes(h.id) && !regular.includes(h.id)).map((h) => h.id);
  const local = new Set(hosts.filter((h) => h.isLocal).map((h) => h.id));
  return {
    planned: plan.hosts.filter((h) => !local.has(h)),
    reserves,
    regularHosts: [...regular, ...reserves],
  };
}

/**
 * The scheduler of a live run: the plan's policy variant (e.g. lookahead)
 * on the plan's hosts plus the reserves, which start unavailable.
 */
export function liveScheduler(plan: Plan, jobs: Job[], hosts: Host[], placement: LivePlacement = livePlacement(plan, hosts)): OnlineScheduler {
  const scheduler = new OnlineScheduler(jobs, hosts, { ...schedulerOptionsForPlan(plan), regularHosts: placement.regularHosts });
  for (const h of placement.reserves) scheduler.setHostAvailable(h, false);
  return scheduler;
}
