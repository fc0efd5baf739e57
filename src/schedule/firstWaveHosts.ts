import { fits } from './fit.js';
import { planBuild } from './planBuild.js';
import type { Host, Job, Plan } from './types.js';

/**
 * Above this many jobs every builder that fits one is counted in: planning
 * takes milliseconds up to here, but hundreds of them for a DAG like
 * firefox's (2,152 jobs; bench/plan.ts), and the run plans again anyway
 * once it knows what the builders hold.
 */
const PLANNED_JOB_LIMIT = 100;

/**
 * The hosts a plan starts jobs on before any job has ended: those a run
 * gets ready while it starts. The others need nothing until a job is sent
 * to them, which the live run may still decide otherwise.
 */
export function firstWave(plan: Pick<Plan, 'assignments'>): Set<string> {
  // A loop, not Math.min(...ends): a pass's plan may hold 100,000 jobs, more arguments than a call takes.
  let firstEnd = Infinity;
  for (const a of plan.assignments) firstEnd = Math.min(firstEnd, a.end);
  return new Set(plan.assignments.filter((a) => a.start < firstEnd).map((a) => a.host));
}

/** The builders of the first wave, planned ahead of the run's own plan (which waits for what the builders hold). */
export function firstWaveHosts(jobs: Job[], hosts: Host[]): string[] {
  const builders = hosts.filter((h) => !h.isLocal && !h.transferLane && h.maxJobs > 0);
  if (jobs.length === 0 || builders.length === 0) return [];
  if (jobs.length > PLANNED_JOB_LIMIT) return builders.filter((h) => jobs.some((j) => fits(h, j))).map((h) => h.id);
  const starting = firstWave(planBuild(jobs, hosts));
  return builders.filter((h) => starting.has(h.id)).map((h) => h.id);
}
