import { BadInputError } from '../errors/offloadError.js';
import type { Job } from './types.js';

/**
 * The job DAG in compressed-sparse-row form, indexed by the jobs' position in
 * the input array, so the scheduler's hot loops touch typed arrays instead of
 * maps of strings.
 */
export interface Topology {
  jobs: Job[];
  indexOf: Map<string, number>;
  depStart: Int32Array;
  deps: Int32Array;
  childStart: Int32Array;
  children: Int32Array;
  /** Every job after all of its deps. */
  order: Int32Array;
}

export class JobGraphError extends BadInputError {}

/**
 * Topologies are pure functions of the job array; plan builds several
 * schedules over the same one. Job arrays are treated as immutable: build a
 * new array rather than pushing to one already scheduled.
 */
const cache = new WeakMap<Job[], Topology>();

export function buildTopology(jobs: Job[]): Topology {
  const cached = cache.get(jobs);
  if (cached) return cached;
  const topo = computeTopology(jobs);
  cache.set(jobs, topo);
  return topo;
}

function computeTopology(jobs: Job[]): Topology {
  const n = jobs.length;
  const indexOf = new Map<string, number>();
  jobs.forEach((job, i) => {
    if (indexOf.has(job.id)) throw new JobGraphError(`job ${job.id} is listed twice`);
    indexOf.set(job.id, i);
  });
  const depStart = new Int32Array(n + 1);
  let edges = 0;
  for (let i = 0; i < n; i++) {
    edges += jobs[i]!.deps.length;
    depStart[i + 1] = edges;
  }
  // deps may repeat within a job; duplicates are dropped while filling.
  const deps = new Int32Array(edges);
  const seen = new Int32Array(n).fill(-1);
  const childCount = new Int32Array(n + 1);
  let fill = 0;
  for (let i = 0; i < n; i++) {
    const job = jobs[i]!;
    depStart[i] = fill;
    for (const dep of job.deps) {
      const d = indexOf.get(dep);
      if (d === undefined) throw new JobGraphError(`job ${job.id} depends on ${dep}, which is not in the job set`);
      if (seen[d] === i) continue;
      seen[d] = i;
      deps[fill++] = d;
      childCount[d + 1]!++;
    }
  }
  depStart[n] = fill;
  const childStart = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) childStart[i + 1] = childStart[i]! + childCount[i + 1]!;
  const children = new Int32Array(fill);
  const at = childStart.slice(0, n);
  for (let i = 0; i < n; i++) {
    for (let e = depStart[i]!; e < depStart[i + 1]!; e++) children[at[deps[e]!]!++] = i;
  }
  const order = topologicalOrder(n, depStart, childStart, children);
  if (order === null) throw new JobGraphError('the jobs contain a dependency cycle');
  return { jobs, indexOf, depStart, deps: deps.subarray(0, fill), childStart, children, order };
}

function topologicalOrder(
  n: number,
  depStart: Int32Array,
  childStart: Int32Array,
  children: Int32Array,
): Int32Array | null {
  const missing = new Int32Array(n);
  const order = new Int32Array(n);
  // Kahn's queue is order[taken..queued).
  let queued = 0;
  for (let i = 0; i < n; i++) {
    missing[i] = depStart[i + 1]! - depStart[i]!;
    if (missing[i] === 0) order[queued++] = i;
  }
  for (let taken = 0; taken < queued; taken++) {
    const j = order[taken]!;
    for (let e = childStart[j]!; e < childStart[j + 1]!; e++) {
      const c = children[e]!;
      if (--missing[c]! === 0) order[queued++] = c;
    }
  }
  return queued === n ? order : null;
}
