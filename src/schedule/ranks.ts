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
    let longestAfter = 0;
    for (let e = topo.childStart[j]!; e < topo.childStart[j + 1]!; e++) {
      longestAfter = Math.max(longestAfter, rank[topo.children[e]!]!);
    }
    rank[j] = weight[j]! + longestAfter;
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

/**
 * max(critical path at each job's fastest fitting speed, work / capacity).
 * The work term divides reference seconds by reference capacity (Σ
 * slots·speedFactor), the valid form for hosts of mixed speed, and is taken
 * for every fit class's host set too: jobs that only fit hosts S must be done
 * by S alone (big-parallel work on the one big host, say).
 */
export function lowerBoundOf(topo: Topology, hosts: Host[], fit: FitClasses): number {
  const rank = upwardRanks(topo, optimisticWeights(topo.jobs, fit));
  let bound = 0;
  for (const r of rank) bound = Math.max(bound, r);
  const classWork = new Float64Array(fit.hostsOf.length);
  topo.jobs.forEach((job, i) => (classWork[fit.classOf[i]!]! += job.duration));
  const hasBuiltin = fit.builtin.some((b, c) => b && classWork[c]! > 0);
  const slots = hosts.map((h) => Math.max(slotLimit(h, false), hasBuiltin ? slotLimit(h, true) : 0) * h.speedFactor);
  const sets = [...fit.hostsOf, [...new Set(fit.hostsOf.flat())]];
  for (const set of sets) {
    const inSet = new Set(set);
    let work = 0;
    fit.hostsOf.forEach((hs, c) => {
      if (hs.length > 0 && hs.every((k) => inSet.has(k))) work += classWork[c]!;
    });
    const capacity = set.reduce((a, k) => a + slots[k]!, 0);
    if (capacity > 0) bound = Math.max(bound, work / capacity);
  }
  return bound;
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
