import { fits, isTransfer, slotLimit } from './fit.js';
import type { Host, Job } from './types.js';

/**
 * Jobs grouped by the set of hosts that can build them. Real DAGs have a
 * handful of (system, features) combinations, so per-class work is cheap
 * and fit is never re-checked per job in the scheduler's loops.
 */
export interface FitClasses {
  classOf: Int32Array;
  /** class → indices (into hosts) of the hosts that fit it. */
  hostsOf: number[][];
  /** class → highest speedFactor among its hosts; 0 when none fits. */
  fastest: Float64Array;
  builtin: boolean[];
}

/**
 * `regularAllowed` restricts where non-builtin jobs may go (the baselines
 * "all local" and "single fastest host" use it); builtin jobs keep the local
 * host regardless.
 */
export function computeFitClasses(
  jobs: Job[],
  hosts: Host[],
  regularAllowed: (host: Host) => boolean = () => true,
): FitClasses {
  const classOf = new Int32Array(jobs.length);
  const byKey = new Map<string, number>();
  const hostsOf: number[][] = [];
  const builtin: boolean[] = [];
  jobs.forEach((job, i) => {
    const key = isTransfer(job) ? '\0transfer' : job.isBuiltin ? '\0builtin' : `${job.system}\0${[...job.requiredFeatures].sort().join(' ')}`;
    let c = byKey.get(key);
    if (c === undefined) {
      c = hostsOf.length;
      byKey.set(key, c);
      const fitting: number[] = [];
      hosts.forEach((h, k) => {
        if (!fits(h, job) || slotLimit(h, job.isBuiltin) <= 0) return;
        if (!job.isBuiltin && !h.transferLane && !regularAllowed(h)) return;
        fitting.push(k);
      });
      hostsOf.push(fitting);
      builtin.push(job.isBuiltin);
    }
    classOf[i] = c;
  });
  const fastest = new Float64Array(hostsOf.length);
  hostsOf.forEach((hs, c) => {
    for (const k of hs) fastest[c] = Math.max(fastest[c]!, hosts[k]!.speedFactor);
  });
  return { classOf, hostsOf, fastest, builtin };
}
