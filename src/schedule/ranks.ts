import { computeFitClasses, type FitClasses } from './fitClasses.js';
import { buildTopology, type Topology } from './jobGraph.js';
import { slotLimit } from './fit.js';
import type { Host, Job } from './types.js';

/**
 * Each job's duration at the fastest host that fits it: the optimistic cost
 * the ranks and bounds use. A job no host fits counts at speed 1 (planBuild
 * rejects such sets before this matters).
 */
export function optimisticWeights(jobs: Job[], fit: FitClasses): Float64Array {
  const w = new Float64Array(jobs.length);
  jobs.forEach((job, i) => {
    const speed = fit.fastest[fit.classOf[i]!]!;
    w[i] = job.duration / (speed > 0 ? speed : 1);
  });
  return w;
}

/** Upward rank: own weight plus the longest weighted path to any sink. O(V+E). */
export function upwardRanks(topo: Topology, weight: Float64Array): Float64Array {
  const rank = new Float64Array(topo.jobs.length);
  for (let o = topo.order.length - 1; o >= 0; o--) {
    const j = topo.order[o]!;
    let tail = 0;
    for (let e = topo.childStart[j]!; e < topo.childStart[j + 1]!; e++) {
      tail = Math.max(tail, rank[topo.children[e]!]!);
    }
    rank[j] = weight[j]! + tail;
  }
  return rank;
}

/** The path of highest rank, first job to last, as indices. */
export function criticalPathIndices(topo: Topology, rank: Float64Array): number[] {
  let best = -1;
  for (let i = 0; i < rank.length; i++) {
    const isSource = topo.depStart[i + 1] === topo.depStart[i];
    if (isSource && (best < 0 || rank[i]! > rank[best]!)) best = i;
  }
  const path: number[] = [];
  for (let j = best; j >= 0; ) {
    path.push(j);
    let next = -1;
    for (let e = topo.childStart[j]!; e < topo.childStart[j + 1]!; e++) {
      const c = topo.children[e]!;
      if (next < 0 || rank[c]! > rank[next]!) next = c;
    }
    j = next;
  }
  return path;
}

/** Capacity in reference-seconds per second: Σ slots·speedFactor over hosts some job fits. */
export function usableCapacity(jobs: Job[], hosts: Host[], fit: FitClasses): number {
  const used = new Set<number>();
  const builtinOnly = new Set<number>();
  fit.hostsOf.forEach((hs, c) => hs.forEach((k) => (fit.builtin[c] ? builtinOnly : used).add(k)));
  let capacity = 0;
  hosts.forEach((h, k) => {
    if (used.has(k)) capacity += Math.max(slotLimit(h, false), builtinOnly.has(k) ? slotLimit(h, true) : 0) * h.speedFactor;
    else if (builtinOnly.has(k)) capacity += slotLimit(h, true) * h.speedFactor;
  });
  return capacity;
}

/**
 * max(critical path at each job's fastest fitting speed, Σ durations / Σ
 * slots·speedFactor). The work term divides reference seconds by reference
 * capacity, which is the valid (and tighter) form for hosts of mixed speed.
 */
export function lowerBoundOf(topo: Topology, hosts: Host[], fit: FitClasses): number {
  const rank = upwardRanks(topo, optimisticWeights(topo.jobs, fit));
  let cp = 0;
  for (const r of rank) cp = Math.max(cp, r);
  let work = 0;
  for (const job of topo.jobs) work += job.duration;
  const capacity = usableCapacity(topo.jobs, hosts, fit);
  return Math.max(cp, capacity > 0 ? work / capacity : 0);
}

export function lowerBound(jobs: Job[], hosts: Host[]): number {
  return lowerBoundOf(buildTopology(jobs), hosts, computeFitClasses(jobs, hosts));
}

/** Job ids along the longest path at the fastest fitting speeds. */
export function criticalPath(jobs: Job[], hosts: Host[]): string[] {
  const topo = buildTopology(jobs);
  const rank = upwardRanks(topo, optimisticWeights(jobs, computeFitClasses(jobs, hosts)));
  return criticalPathIndices(topo, rank).map((i) => jobs[i]!.id);
}

/** Upward rank of every job, by id. */
export function upwardRank(jobs: Job[], hosts: Host[]): Map<string, number> {
  const topo = buildTopology(jobs);
  const rank = upwardRanks(topo, optimisticWeights(jobs, computeFitClasses(jobs, hosts)));
  return new Map(jobs.map((j, i) => [j.id, rank[i]!]));
}
