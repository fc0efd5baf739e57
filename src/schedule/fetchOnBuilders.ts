import { fits } from './fit.js';
import type { Host, Job } from './types.js';

/**
 * With builders-use-substitutes, which fetches only builders need: every
 * fetch except the roots' outputs, the inputs of builds no builder can run
 * (those build here), and the runtime closure of those. The rest are left
 * to the builder whose build needs them, which substitutes them itself, as
 * Nix's build hook lets it; their bytes never pass through the local store.
 * Returns the jobs with those fetches marked `transfer.onBuilder`.
 */
export function markFetchesOnBuilders(jobs: readonly Job[], roots: readonly string[], hosts: readonly Host[]): Job[] {
  const builders = hosts.filter((h) => !h.isLocal && !h.transferLane && h.maxJobs > 0);
  if (builders.length === 0) return [...jobs];
  const fetches = new Map(jobs.filter((j) => j.action === 'fetch').map((j) => [j.id, j]));
  const rootSet = new Set(roots);
  const consumed = new Set<string>();
  const referenced = new Set<string>();
  const here: string[] = [];
  for (const job of jobs) {
    const fetchDeps = job.deps.filter((d) => fetches.has(d));
    if (job.action === 'fetch') {
      for (const d of fetchDeps) referenced.add(d);
      if (rootSet.has(job.id)) here.push(job.id);
      continue;
    }
    if (job.action !== undefined && job.action !== 'build') continue;
    for (const d of fetchDeps) consumed.add(d);
    if (!builders.some((h) => fits(h, job))) here.push(...fetchDeps);
  }
  // A fetch nothing builds with and nothing refers to (none should exist) is fetched here, as before.
  for (const id of fetches.keys()) if (!consumed.has(id) && !referenced.has(id)) here.push(id);
  const local = new Set<string>();
  for (let id = here.pop(); id !== undefined; id = here.pop()) {
    if (local.has(id)) continue;
    local.add(id);
    for (const d of fetches.get(id)!.deps) if (fetches.has(d)) here.push(d);
  }
  return jobs.map((j) => (j.action === 'fetch' && !local.has(j.id) ? { ...j, transfer: { ...j.transfer!, onBuilder: true } } : j));
}

/**
 * The live run's split: the fetches builders make are not scheduled (a
 * build that needs one fetches it on its host first), so builds stop
 * waiting for them; everything else is scheduled as planned.
 */
export function splitFetchesOnBuilders(jobs: readonly Job[]): { scheduled: Job[]; onBuilders: Job[] } {
  const onBuilders = jobs.filter((j) => j.transfer?.onBuilder === true);
  if (onBuilders.length === 0) return { scheduled: [...jobs], onBuilders };
  const ids = new Set(onBuilders.map((j) => j.id));
  const scheduled = jobs.filter((j) => !ids.has(j.id)).map((j) => (j.deps.some((d) => ids.has(d)) ? { ...j, deps: j.deps.filter((d) => !ids.has(d)) } : j));
  return { scheduled, onBuilders };
}
