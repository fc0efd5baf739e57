import { IndexHeap } from '../src/schedule/binaryHeap.js';
import { assertEveryJobFits, slotLimit } from '../src/schedule/fit.js';
import { computeFitClasses } from '../src/schedule/fitClasses.js';
import { buildTopology, type Topology } from '../src/schedule/jobGraph.js';
import { criticalPathIndices, optimisticWeights, upwardRanks } from '../src/schedule/ranks.js';
import { runOnClock, type Policy } from '../src/schedule/simulate.js';
import type { Start } from '../src/schedule/onlineScheduler.js';
import type { Host, Job, Plan } from '../src/schedule/types.js';

/** Depth-first post-order from the roots: roughly the order Nix's worker reaches derivations. */
function discoveryOrder(topo: Topology): Int32Array {
  const n = topo.jobs.length;
  const pos = new Int32Array(n).fill(-1);
  const isDep = new Uint8Array(n);
  for (const d of topo.deps) isDep[d] = 1;
  let next = 0;
  const stack: Array<[number, number]> = [];
  for (let root = 0; root < n; root++) {
    if (isDep[root] || pos[root]! >= 0) continue;
    stack.push([root, topo.depStart[root]!]);
    pos[root] = -2;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const [j, e] = top;
      if (e < topo.depStart[j + 1]!) {
        top[1] = e + 1;
        const d = topo.deps[e]!;
        if (pos[d] === -1) {
          pos[d] = -2;
          stack.push([d, topo.depStart[d]!]);
        }
      } else {
        stack.pop();
        pos[j] = next++;
      }
    }
  }
  return pos;
}

/**
 * What Nix's build-remote hook does, for comparison only: no priorities
 * (discovery order), remote builders first, the remote with the least
 * load / speedFactor among those with a free slot (ties: higher speedFactor,
 * then lower load), the local machine only when no remote can take the job
 * (or first for preferLocalBuild). Real speedFactor division, as after
 * NixOS/nix#9841.
 */
export class NixLikePolicy implements Policy {
  private readonly topo: Topology;
  private readonly hosts: Host[];
  private readonly fitHosts: number[][];
  private readonly classHosts: number[][];
  private readonly classBuiltin: number[];
  private readonly classOf: Int32Array;
  private readonly pos: Int32Array;
  private readonly limit: number[][];
  private readonly load: number[];
  private readonly missing: Int32Array;
  private readonly hostOf: Int32Array;
  /** One ready queue per fit class, so hosts nobody can use (an idle aarch64 box) cost nothing. */
  private readonly ready: IndexHeap[];
  private readonly rankForReport: Float64Array;
  private left: number;

  constructor(jobs: Job[], hosts: Host[]) {
    this.topo = buildTopology(jobs);
    this.hosts = hosts;
    const fit = computeFitClasses(jobs, hosts);
    this.fitHosts = jobs.map((_, i) => fit.hostsOf[fit.classOf[i]!]!);
    this.limit = [hosts.map((h) => slotLimit(h, false)), hosts.map((h) => slotLimit(h, true))];
    this.load = hosts.map(() => 0);
    this.rankForReport = upwardRanks(this.topo, optimisticWeights(jobs, fit));
    const pos = discoveryOrder(this.topo);
    this.pos = pos;
    this.classOf = fit.classOf;
    this.classHosts = fit.hostsOf;
    this.classBuiltin = fit.builtin.map((b) => (b ? 1 : 0));
    this.ready = fit.hostsOf.map(() => new IndexHeap((a, b) => pos[a]! < pos[b]!));
    this.missing = new Int32Array(jobs.length);
    this.hostOf = new Int32Array(jobs.length).fill(-1);
    this.left = jobs.length;
    for (let i = 0; i < jobs.length; i++) {
      this.missing[i] = this.topo.depStart[i + 1]! - this.topo.depStart[i]!;
      if (this.missing[i] === 0) this.ready[this.classOf[i]!]!.push(i);
    }
  }

  next(_now: number): Start[] {
    const starts: Start[] = [];
    for (;;) {
      let best = -1;
      for (let c = 0; c < this.ready.length; c++) {
        const i = this.ready[c]!.peek();
        if (i === undefined || (best >= 0 && this.pos[i]! > this.pos[best]!)) continue;
        if (this.classHosts[c]!.some((k) => this.load[k]! < this.limit[this.classBuiltin[c]!]![k]!)) best = i;
      }
      if (best < 0) return starts;
      this.ready[this.classOf[best]!]!.pop();
      const k = this.pick(best);
      this.load[k]!++;
      this.hostOf[best] = k;
      starts.push({ jobId: this.topo.jobs[best]!.id, host: this.hosts[k]!.id });
    }
  }

  finished(jobId: string, _now: number): void {
    const i = this.topo.indexOf.get(jobId)!;
    this.load[this.hostOf[i]!]!--;
    this.left--;
    for (let e = this.topo.childStart[i]!; e < this.topo.childStart[i + 1]!; e++) {
      const c = this.topo.children[e]!;
      if (--this.missing[c]! === 0) this.ready[this.classOf[c]!]!.push(c);
    }
  }

  isComplete(): boolean {
    return this.left === 0;
  }

  criticalPath(): string[] {
    return criticalPathIndices(this.topo, this.rankForReport).map((i) => this.topo.jobs[i]!.id);
  }

  private pick(i: number): number {
    const builtin = this.topo.jobs[i]!.isBuiltin ? 1 : 0;
    const free = (k: number) => this.load[k]! < this.limit[builtin]![k]!;
    const localFree = this.fitHosts[i]!.find((k) => this.hosts[k]!.isLocal && free(k)) ?? -1;
    // preferLocalBuild is the one thing that makes Nix try local first.
    if (this.topo.jobs[i]!.preferLocalBuild && localFree >= 0) return localFree;
    let best = -1;
    for (const k of this.fitHosts[i]!) {
      const h = this.hosts[k]!;
      if (h.isLocal || !free(k)) continue;
      if (best < 0) {
        best = k;
        continue;
      }
      const b = this.hosts[best]!;
      const score = this.load[k]! / h.speedFactor;
      const bestScore = this.load[best]! / b.speedFactor;
      if (
        score < bestScore ||
        (score === bestScore &&
          (h.speedFactor > b.speedFactor || (h.speedFactor === b.speedFactor && this.load[k]! < this.load[best]!)))
      ) {
        best = k;
      }
    }
    return best >= 0 ? best : localFree;
  }
}

/** Nix's own behaviour on a simulated clock, as a Plan for side-by-side reports. */
export function simulateNixLike(jobs: Job[], hosts: Host[]): Plan {
  assertEveryJobFits(jobs, hosts);
  return runOnClock(new NixLikePolicy(jobs, hosts), jobs, hosts, 'nix-like');
}

