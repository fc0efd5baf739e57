import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { MachinesConfig } from '../config/machine.js';
import type { DerivationSet } from '../drv/derivation.js';
import { loadDrvClosure, loadJsonClosure } from '../drv/loadClosure.js';
import { buildGraph, type BuildGraph } from '../graph/buildGraph.js';
import type { Substitute } from '../graph/queryMissing.js';
import { findMissing, type FoundWork, type MissingSources } from '../run/findMissing.js';
import type { DurationRules } from '../schedule/durations.js';
import { makeJob } from '../schedule/makeJob.js';
import { LOCAL_HOST, TRANSFER_LANE, type Host, type Job } from '../schedule/types.js';
import type { ExpressionOptions, WantedDerivation } from '../installable/installable.js';
import { InstallableSyntaxError, parseInstallable } from '../installable/parseInstallable.js';
import { resolveInstallables } from '../installable/resolveInstallables.js';
import { checkWantedOutputs, rootsFromWanted } from '../installable/wantedRoots.js';
import { queryValidLocalPaths, queryValidLocalPathsKeepingServe } from '../store/localStore.js';
import type { ServeClient } from '../remote/serveClient.js';
import { DEFAULT_STORE_DIR } from '../storePath/storePath.js';

export interface WorkloadOptions {
  fromJson?: string;
  storeDir?: string;
  /** When false, assume nothing is built (no local store is asked). */
  askLocalStore: boolean;
  /** Keep the local `nix-store --serve` that answered open, as `localServe`, for the caller to use or close. */
  keepLocalServe?: boolean;
  /** The closure is read and checked, before the local store is asked. */
  onClosure?: (set: DerivationSet) => void;
  /** nix-build's `-A`, `--arg`, `--argstr`, `-I` for expression files among the installables. */
  expression?: ExpressionOptions;
  /**
   * Nix's `store` setting (MachinesConfig local.store), awaited before the
   * local store is asked: where Nix opens it in-process, its database
   * answers and no `nix-store --serve` starts (store/localStore.ts).
   */
  localStore?: string | Promise<string | undefined>;
  /** Debug lines (why Nix's database was not read). */
  debug?: (message: string) => void;
}

export interface Workload {
  set: DerivationSet;
  graph: BuildGraph;
  /**
   * Which outputs and input sources of the closure the local store holds;
   * null when it was not asked (or Nix is not installed).
   */
  localPaths: ReadonlySet<string> | null;
  /** With `keepLocalServe`, when a server answered (not Nix's database): still open; the caller closes it or hands it on. */
  localServe?: ServeClient;
}

/**
 * Turns what the user named (files, flake references, derivations, output
 * paths: see installable/) into the derivation closure, and works out what
 * still needs building. With `--from-json` the arguments are derivation paths
 * in that file, taken as they are.
 */
export async function loadWorkload(installables: string[], opts: WorkloadOptions): Promise<Workload> {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  let set: DerivationSet;
  if (opts.fromJson !== undefined) {
    const wanted = installables.map((text) => literalDerivation(text));
    const { roots, rootOutputs } = rootsFromWanted(wanted);
    const source = opts.fromJson === '-' ? 'stdin' : opts.fromJson;
    set = { ...loadJsonClosure(await readJsonSource(opts.fromJson), source, roots.length > 0 ? roots : undefined, storeDir), rootOutputs };
    checkWantedOutputs(set, wanted);
  } else {
    const wanted = await resolveInstallables(installables, { expression: opts.expression ?? noExpressionOptions, storeDir, gcRootDir: evaluationRootDir });
    const { roots, rootOutputs } = rootsFromWanted(wanted);
    set = { ...(await loadDrvClosure(roots, { storeDir })), rootOutputs };
    checkWantedOutputs(set, wanted);
  }
  if (opts.onClosure) {
    opts.onClosure(set);
    // The logins it started reach their connect (a few promise turns) before the local store's process
    // is spawned below: a fork that holds the thread for 10-20 ms, during which no handshake moves.
    await new Promise((resolve) => setImmediate(resolve));
  }
  // One question to the store serves both the graph (outputs) and the executor (input sources too).
  if (!opts.askLocalStore) return { set, graph: buildGraph(set, new Set()), localPaths: null };
  const paths = pathsTheClosureUses(set);
  // A configuration that failed to load is reported by its caller; the store is asked as before.
  const store = await Promise.resolve(opts.localStore).catch(() => undefined);
  const asking = { storeDir, ...(store !== undefined ? { store } : {}), ...(opts.debug ? { debug: opts.debug } : {}) };
  const asked = opts.keepLocalServe ? await queryValidLocalPathsKeepingServe(paths, { ...asking, decisive: rootOutputPaths(set) }) : { valid: await queryValidLocalPaths(paths, asking), serve: undefined };
  const localServe = asked?.serve;
  try {
    return { set, graph: buildGraph(set, asked?.valid ?? new Set()), localPaths: asked?.valid ?? null, ...(localServe ? { localServe } : {}) };
  } catch (error) {
    localServe?.close();
    throw error;
  }
}

export interface MissingOptions {
  /** Cache answers per path; absent when substitution is off. */
  substitutes?: MissingSources['substitutes'];
  /** Output path → a builder that holds it. */
  held?: ReadonlyMap<string, string>;
  /** Paths a cache failed to deliver: never substitutes again. */
  refused?: ReadonlySet<string>;
  /** Cache answers already known (shared between walks of one run). */
  known?: Map<string, Substitute | null>;
  /** The local store, for references outside the closure; without it they count as not valid. */
  localValid?: MissingSources['localValid'];
}

/**
 * What the run must do: queryMissing from the roots over the local store's
 * answers, the builders' holdings and the caches (see findMissing).
 */
export async function missingWork(workload: Pick<Workload, 'set' | 'localPaths'>, opts: MissingOptions = {}): Promise<FoundWork> {
  const closure = pathsTheClosureUses(workload.set);
  const local = workload.localPaths;
  return findMissing(
    workload.set,
    { localValid: local ?? new Set(), asked: new Set(closure), held: opts.held ?? new Map(), ...(opts.refused ? { refused: opts.refused } : {}) },
    {
      localValid: opts.localValid ?? (async () => []),
      ...(local && opts.substitutes ? { substitutes: opts.substitutes } : {}),
    },
    opts.known,
  );
}

/** Outputs of the closure that the local store lacks: what to ask builders and caches about. */
export function missingOutputs(workload: Pick<Workload, 'set' | 'localPaths'>): string[] {
  const out: string[] = [];
  for (const d of workload.set.drvs.values()) for (const o of Object.values(d.outputs)) if (o.path !== '' && !workload.localPaths?.has(o.path)) out.push(o.path);
  return out;
}

const noExpressionOptions: ExpressionOptions = { attrs: [], args: [], argstrs: [], includes: [] };

/** In `nix show-derivation` JSON only derivation paths mean anything: no evaluation, no filesystem. */
function literalDerivation(text: string): WantedDerivation {
  const installable = parseInstallable(text);
  if (installable.kind !== 'path') throw new InstallableSyntaxError(text, 'with --from-json, name derivations by their store path (as in the JSON)');
  const outputs = installable.outputs;
  return { drvPath: installable.path, outputs: outputs === undefined || outputs.kind === 'all' ? 'all' : outputs.names, from: text };
}

let rootDir: string | undefined;

/**
 * nix-instantiate's GC roots for this process: they keep the evaluated .drv
 * files from a garbage collection until offload is done with them, and go
 * when it exits. Made on the first evaluation: a build of `.drv` paths
 * evaluates nothing, and removing a folder at exit loaded Node's rimraf
 * (~5-15 ms of every exit).
 */
function evaluationRootDir(): string {
  if (rootDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'offload-eval-'));
    rootDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return rootDir;
}

/** Every output of the roots: all valid, and the run has nothing to build. */
function rootOutputPaths(set: DerivationSet): string[] {
  return set.roots.flatMap((root) => Object.values(set.drvs.get(root)?.outputs ?? {}).map((o) => o.path)).filter((p) => p !== '');
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

/** What the history is asked about: every derivation that needs building. */
export function estimateKeys(graph: BuildGraph): Array<{ name: string; system: string }> {
  return graph.order.map((id) => {
    const drv = graph.nodes.get(id)!.drv;
    return { name: drv.name, system: drv.system };
  });
}

/** The scheduler's view of the derivations that need building. */
export function jobsFromGraph(graph: BuildGraph, rules: DurationRules, history?: (name: string, system: string) => number | undefined): Job[] {
  return graph.order.map((id) => {
    const node = graph.nodes.get(id)!;
    return makeJob(node.drv, node.deps, rules, history);
  });
}

/**
 * The local machine is a host like the others, with `--max-jobs` slots;
 * with `transferSlots`, the transfer lane for fetches and copies is one too.
 */
export function hostsFromConfig(config: MachinesConfig, transferSlots?: number): Host[] {
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
  const lane: Host[] =
    transferSlots === undefined
      ? []
      : [{ id: TRANSFER_LANE, systems: [], supportedFeatures: [], mandatoryFeatures: [], maxJobs: transferSlots, speedFactor: 1, isLocal: false, transferLane: true }];
  return [local, ...remotes, ...lane];
}
