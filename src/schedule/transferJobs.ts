import type { BuildGraph } from '../graph/buildGraph.js';
import type { FetchUnit, HeldUnit } from '../graph/queryMissing.js';
import { makeJob } from './makeJob.js';
import type { DurationRules, HistoryLookup } from './durations.js';
import type { Job } from './types.js';

/** Bytes per second of a download from a cache, or a copy from a builder, as learned or assumed. */
export type TransferRate = (from: string) => number;

/** Before anything is learned: a download from a cache on the Internet, a copy over a LAN. */
export const DEFAULT_FETCH_BYTES_PER_SECOND = 20 * 1024 * 1024;
export const DEFAULT_COPY_BYTES_PER_SECOND = 60 * 1024 * 1024;
/** Narinfo, NAR request and the store's registration: what even a tiny path costs. */
export const TRANSFER_OVERHEAD_SECONDS = 0.1;

export function transferSeconds(bytes: number, bytesPerSecond: number): number {
  return TRANSFER_OVERHEAD_SECONDS + bytes / Math.max(1, bytesPerSecond);
}

export interface WorkForJobs {
  graph: BuildGraph;
  fetch: readonly FetchUnit[];
  held: readonly HeldUnit[];
}

export interface TransferEstimates {
  fetchRate: TransferRate;
  copyRate: TransferRate;
  /** NAR bytes of paths builders hold, when they said (else the copy counts as overhead only). */
  heldBytes?: (path: string) => number | undefined;
}

/**
 * The scheduler's view of a run with substitution: a build job per
 * derivation to build, a fetch job per fetch unit (after the units holding
 * its references), and a copy job per root a builder holds. A build waits
 * for the fetches of its inputs, so downloads sit on the same clock.
 */
export function jobsForWork(work: WorkForJobs, rules: DurationRules, history: HistoryLookup | undefined, estimates: TransferEstimates): Job[] {
  const fetchOf = new Map(work.fetch.filter((u) => u.drvPath !== undefined).map((u) => [u.drvPath!, u.id]));
  const jobs: Job[] = [];
  for (const unit of work.fetch) {
    jobs.push({
      ...transferJob(unit.id, unit.name, unit.deps),
      action: 'fetch',
      duration: transferSeconds(unit.downloadBytes, estimates.fetchRate(unit.cache)),
      transfer: { bytes: unit.downloadBytes, narBytes: unit.narBytes, from: unit.cache, paths: unit.paths },
    });
  }
  for (const unit of work.held) {
    if (!unit.copyHere) continue;
    const bytes = unit.paths.reduce((a, p) => a + (estimates.heldBytes?.(p) ?? 0), 0);
    jobs.push({
      ...transferJob(unit.drvPath, unit.name, []),
      action: 'copy',
      duration: transferSeconds(bytes, estimates.copyRate(unit.host)),
      transfer: { bytes, from: unit.host, paths: unit.paths },
    });
  }
  for (const id of work.graph.order) {
    const node = work.graph.nodes.get(id)!;
    const fetched = Object.keys(node.drv.inputDrvs).flatMap((input) => {
      const unit = fetchOf.get(input);
      return unit === undefined ? [] : [unit];
    });
    jobs.push(makeJob(node.drv, [...node.deps, ...fetched], rules, history));
  }
  return jobs;
}

function transferJob(id: string, name: string, deps: string[]): Omit<Job, 'duration' | 'action'> {
  return { id, name, system: '', requiredFeatures: [], estimateSource: 'default', deps, preferLocalBuild: false, isBuiltin: false };
}
