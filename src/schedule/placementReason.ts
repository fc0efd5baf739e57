import { fits } from './fit.js';
import type { Host, Job, Plan } from './types.js';

/**
 * Why the plan put a job where it did, in a few words for the plan table and
 * `--json`. Derived after the fact from the same facts the policy used (fit,
 * critical path, speed, the winning candidate), so it cannot disagree with it.
 */
export function placementReason(job: Job, host: string, hosts: readonly Host[], plan: Plan, onCriticalPath: boolean): string {
  if (job.isBuiltin) return 'builtin: runs on the local machine';
  const fitting = hosts.filter((h) => fits(h, job) && h.maxJobs > 0);
  if (fitting.length === 1) return `only ${host} fits (${fitWhat(job)})`;
  const allowed = plan.regularHosts ?? plan.hosts;
  if (!plan.policy.startsWith('offload')) {
    return `${plan.policy} beat the list schedule, so only ${allowed.join(', ')} ${allowed.length === 1 ? 'builds' : 'build'}`;
  }
  const chosen = hosts.find((h) => h.id === host);
  const fastest = Math.max(...fitting.map((h) => h.speedFactor));
  if (job.preferLocalBuild && chosen?.isLocal) return 'preferLocalBuild, and local finishes it in time';
  if (onCriticalPath) return `critical path: earliest finish of ${fitting.length} fitting hosts`;
  if (chosen && chosen.speedFactor < fastest) return 'has slack: a slower host finishes it in time, faster ones stay free';
  return `earliest finish of ${fitting.length} fitting hosts`;
}

function fitWhat(job: Job): string {
  const features = job.requiredFeatures.length > 0 ? ` with {${job.requiredFeatures.join(', ')}}` : '';
  return `${job.system}${features}`;
}
