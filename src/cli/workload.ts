import { readFile } from 'node:fs/promises';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { MachinesConfig } from '../config/machine.js';
import type { DerivationSet } from '../drv/derivation.js';
import { loadDrvClosure, loadJsonClosure } from '../drv/loadClosure.js';
import { buildGraph, type BuildGraph } from '../graph/buildGraph.js';
import type { DurationRules } from '../schedule/durations.js';
import { makeJob } from '../schedule/makeJob.js';
import { LOCAL_HOST, type Host, type Job } from '../schedule/types.js';
import { queryValidLocalPaths } from '../store/localStore.js';

export interface WorkloadOptions {
  fromJson?: string;
  storeDir?: string;
  /** When false, assume nothing is built (no local store is asked). */
  askLocalStore: boolean;
}

export interface Workload {
  set: DerivationSet;
  graph: BuildGraph;
  /**
   * Which outputs and input sources of the closure the local store holds;
   * null when it was not asked (or Nix is not installed).
   */
  localPaths: ReadonlySet<string> | null;
}

/** Loads the derivation closure and works out what still needs building. */
export async function loadWorkload(roots: string[], opts: WorkloadOptions): Promise<Workload> {
  const set = opts.fromJson !== undefined ? loadJsonClosure(await readJsonSource(opts.fromJson), opts.fromJson === '-' ? 'stdin' : opts.fromJson, roots.length > 0 ? roots : undefined) : await loadDrvClosure(roots, { storeDir: opts.storeDir });
  // One question to the store serves both the graph (outputs) and the executor (input sources too).
  const valid = opts.askLocalStore ? await queryValidLocalPaths(pathsTheClosureUses(set)) : null;
  return { set, graph: buildGraph(set, valid ?? new Set()), localPaths: valid };
}

function pathsTheClosureUses(set: DerivationSet): string[] {
  const paths = new Set<string>();
  for (const d of set.drvs.values()) {
    for (const src of d.inputSrcs) paths.add(src);
    for (const o of Object.values(d.outputs)) if (o.path !== '') paths.add(o.path);
  }
  return [...paths];
}

async function readJsonSource(source: string): Promise<string> {
  if (source !== '-') {
    try {
      return await readFile(source, 'utf8');
    } catch (cause) {
      throw new OffloadError(`could not read --from-json ${source}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}.`, ExitCode.badInput, { cause });
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The scheduler's view of the derivations that need building. */
export function jobsFromGraph(graph: BuildGraph, rules: DurationRules, history?: (name: string, system: string) => number | undefined): Job[] {
  return graph.order.map((id) => {
    const node = graph.nodes.get(id)!;
    return makeJob(node.drv, node.deps, rules, history);
  });
}

/** The local machine is a host like the others, with `--max-jobs` slots. */
export function hostsFromConfig(config: MachinesConfig): Host[] {
  const local: Host = {
    id: LOCAL_HOST,
    systems: config.local.systems,
    supportedFeatures: config.local.supportedFeatures,
    mandatoryFeatures: [],
    maxJobs: config.local.maxJobs,
    speedFactor: config.local.speedFactor,
    isLocal: true,
  };
  const remotes = config.machines.map<Host>((m) => ({
    id: m.hostName,
    systems: m.systems,
    supportedFeatures: m.supportedFeatures,
    mandatoryFeatures: m.mandatoryFeatures,
    maxJobs: m.maxJobs,
    speedFactor: m.speedFactor,
    isLocal: false,
  }));
  return [local, ...remotes];
}
