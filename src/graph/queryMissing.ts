import type { Derivation, DerivationSet } from '../drv/derivation.js';
import { drvNameFromPath, storePathName } from '../storePath/storePath.js';
import { buildGraph, graphOfNeeded, type BuildGraph } from './buildGraph.js';
import { MissingDerivationError } from './errors.js';

/** What a binary cache offers for one store path (its narinfo, signature already checked). */
export interface Substitute {
  /** Runtime references: full store paths, possibly the path itself. */
  references: readonly string[];
  narSize: number;
  /** Compressed download size, when the cache says. */
  fileSize?: number;
  /** The cache's URL. */
  cache: string;
}

/**
 * What is known so far about the paths the walk meets. `undefined` means
 * "not asked yet": the walk then lists the path in `MissingWork.unknown`, and
 * the caller asks (local store first, then the caches) and walks again.
 */
export interface MissingKnowledge {
  isValid(path: string): boolean | undefined;
  substitute(path: string): Substitute | null | undefined;
  /** A builder that already holds the path (answers that came late are simply absent). */
  heldBy(path: string): string | undefined;
}

/** Paths fetched together: the needed outputs of one derivation (or one stray reference). */
export interface FetchUnit {
  /** The derivation whose outputs these are, or the path itself when no derivation of the set produces it. */
  id: string;
  name: string;
  drvPath?: string;
  paths: string[];
  /** Other fetch units holding references of these paths: they are imported first. */
  deps: string[];
  /** Bytes to download (FileSize, else NarSize). */
  downloadBytes: number;
  narBytes: number;
  /** The cache of the first path (where the bytes come from). */
  cache: string;
}

/** Outputs a builder already holds: not built again; copied here only for the roots. */
export interface HeldUnit {
  drvPath: string;
  name: string;
  host: string;
  paths: string[];
  /** The local store needs them (the derivation is a root). */
  copyHere: boolean;
}

export interface MissingWork {
  /** The derivations to build, with deps among themselves. */
  graph: BuildGraph;
  fetch: FetchUnit[];
  held: HeldUnit[];
  /** Reached derivations whose wanted outputs are all valid locally. */
  valid: string[];
  /** Paths the walk needs answers about before its result is final (empty when final). */
  unknown: string[];
}

/**
 * Nix's queryMissing over the derivation DAG: walking from the roots, a
 * derivation whose wanted outputs are all valid needs nothing; one whose
 * missing outputs a builder holds is left there (or copied, for a root);
 * one whose missing outputs a cache holds, closure included, is fetched,
 * and then nothing it was built from is needed at all; anything else is
 * built, and its inputs are wanted in turn. Consumers are always decided
 * before the derivations they use, so the wanted outputs of each are
 * complete when it is decided. Pure: the caller brings the answers.
 */
export function queryMissing(set: DerivationSet, knowledge: MissingKnowledge, opts: { substitute: boolean }): MissingWork {
  return new MissingWalk(set).walk(knowledge, opts);
}

/**
 * The walk, prepared once per derivation set: the caller walks again after
 * each round of answers, and only the decisions depend on them.
 */
export class MissingWalk {
  private readonly order: string[];
  private readonly producerOf = new Map<string, Derivation>();

  constructor(private readonly set: DerivationSet) {
    this.order = consumersFirst(set);
    for (const path of this.order) {
      const drv = set.drvs.get(path)!;
      for (const o of Object.values(drv.outputs)) if (o.path !== '') this.producerOf.set(o.path, drv);
    }
  }

  walk(knowledge: MissingKnowledge, opts: { substitute: boolean }): MissingWork {
    const { set, order, producerOf } = this;
    // A root wants what was asked of it (drv^dev, -A pkg.dev), else every output.
    const wanted = new Map<string, Set<string>>(set.roots.map((r) => [r, new Set(set.rootOutputs?.get(r) ?? Object.keys(set.drvs.get(r)!.outputs))]));
    const unknown = new Set<string>();
    const fetchable = new Fetchability(knowledge, unknown);
    const roots = new Set(set.roots);
    const build: Derivation[] = [];
    const valid: string[] = [];
    const held: HeldUnit[] = [];
    const fetchPaths: Array<{ drv: Derivation; paths: string[] }> = [];
    for (const drvPath of order) {
      const names = wanted.get(drvPath);
      if (!names) continue;
      const drv = set.drvs.get(drvPath)!;
      const paths = [...names].map((n) => drv.outputs[n]?.path ?? '').sort();
      const validity = paths.map((p) => (p === '' ? false : knowledge.isValid(p)));
      if (validity.some((v) => v === undefined)) {
        // Not asked yet: nothing below it is wanted until we know.
        for (const [i, p] of paths.entries()) if (validity[i] === undefined) unknown.add(p);
        continue;
      }
      const missing = paths.filter((_, i) => validity[i] === false);
      if (missing.length === 0) {
        valid.push(drvPath);
        continue;
      }
      const holders = missing.map((p) => (p === '' ? undefined : knowledge.heldBy(p)));
      if (holders.every((h) => h !== undefined)) {
        held.push({ drvPath, name: drv.name, host: holders[0]!, paths: missing, copyHere: roots.has(drvPath) });
        continue;
      }
      if (opts.substitute && drv.allowSubstitutes && missing.every((p) => p !== '')) {
        const verdicts = missing.map((p) => fetchable.check(p));
        if (verdicts.includes('unknown')) continue;
        if (verdicts.every((v) => v === 'yes')) {
          fetchPaths.push({ drv, paths: missing });
          continue;
        }
      }
      build.push(drv);
      for (const [input, outputs] of Object.entries(drv.inputDrvs)) {
        const set_ = wanted.get(input) ?? new Set<string>();
        for (const o of outputs) set_.add(o);
        wanted.set(input, set_);
      }
  }
  const fetch = fetchUnits(fetchPaths, fetchable, knowledge, producerOf, new Set(build.map((d) => d.drvPath)));
  return {
    graph: graphOfNeeded(set.roots, build, valid),
    fetch,
    held,
    valid,
    unknown: [...unknown].sort(),
  };
  }
}

type Verdict = 'yes' | 'no' | 'unknown';

/** A path can be fetched when a cache has it and each reference is valid here or can be fetched too. */
class Fetchability {
  private readonly memo = new Map<string, Verdict>();

  constructor(
    private readonly knowledge: MissingKnowledge,
    private readonly unknown: Set<string>,
  ) {}

  check(path: string): Verdict {
    const known = this.memo.get(path);
    if (known !== undefined) return known;
    // Iterative depth-first over references, so long runtime chains cannot overflow the stack.
    const stack: Array<{ path: string; refs: string[]; next: number; verdict: Verdict }> = [];
    const enter = (p: string): Verdict | undefined => {
      const done = this.memo.get(p);
      if (done !== undefined) return done;
      const sub = this.knowledge.substitute(p);
      if (sub === undefined) {
        this.unknown.add(p);
        return this.settle(p, 'unknown', false);
      }
      if (sub === null) return this.settle(p, 'no');
      const refs = sub.references.filter((r) => r !== p);
      this.memo.set(p, 'yes'); // provisional: a reference cycle through p does not make p unfetchable
      stack.push({ path: p, refs, next: 0, verdict: 'yes' });
      return undefined;
    };
    const immediate = enter(path);
    if (immediate !== undefined) return immediate;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next === top.refs.length) {
        stack.pop();
        this.settle(top.path, top.verdict);
        const parent = stack[stack.length - 1];
        if (parent) parent.verdict = worse(parent.verdict, top.verdict);
        continue;
      }
      const ref = top.refs[top.next++]!;
      const valid = this.knowledge.isValid(ref);
      if (valid === true) continue;
      if (valid === undefined) {
        this.unknown.add(ref);
        top.verdict = worse(top.verdict, 'unknown');
        continue;
      }
      const v = enter(ref);
      if (v !== undefined) top.verdict = worse(top.verdict, v);
    }
    return this.memo.get(path)!;
  }

  /** The references of `path` that must be fetched with it (not valid here). */
  missingReferences(path: string): string[] {
    const sub = this.knowledge.substitute(path);
    return (sub?.references ?? []).filter((r) => r !== path && this.knowledge.isValid(r) === false);
  }

  private settle(path: string, verdict: Verdict, remember = true): Verdict {
    // An unknown answer is not remembered: the next walk asks again with more known.
    if (remember && verdict !== 'unknown') this.memo.set(path, verdict);
    else this.memo.delete(path);
    return verdict;
  }
}

function worse(a: Verdict, b: Verdict): Verdict {
  if (a === 'no' || b === 'no') return 'no';
  if (a === 'unknown' || b === 'unknown') return 'unknown';
  return 'yes';
}

/**
 * Groups the paths to fetch by producing derivation, adding the runtime
 * closure (references not valid here), so each unit is imported after the
 * units its references are in.
 */
function fetchUnits(
  wanted: Array<{ drv: Derivation; paths: string[] }>,
  fetchable: Fetchability,
  knowledge: MissingKnowledge,
  producerOf: Map<string, Derivation>,
  built: Set<string>,
): FetchUnit[] {
  const unitOf = new Map<string, string>();
  const units = new Map<string, { name: string; drvPath?: string; paths: string[] }>();
  const add = (path: string) => {
    if (unitOf.has(path)) return false;
    const drv = producerOf.get(path);
    const id = drv && !built.has(drv.drvPath) ? drv.drvPath : path;
    let unit = units.get(id);
    if (!unit) units.set(id, (unit = { name: drv ? drv.name : storePathName(path), ...(drv && id === drv.drvPath ? { drvPath: drv.drvPath } : {}), paths: [] }));
    unit.paths.push(path);
    unitOf.set(path, id);
    return true;
  };
  const queue: string[] = [];
  for (const w of wanted) for (const p of w.paths) if (add(p)) queue.push(p);
  for (let p = queue.pop(); p !== undefined; p = queue.pop()) {
    for (const ref of fetchable.missingReferences(p)) if (add(ref)) queue.push(ref);
  }
  const out: FetchUnit[] = [];
  for (const [id, unit] of units) {
    const paths = unit.paths.sort();
    const deps = new Set<string>();
    for (const p of paths) for (const ref of fetchable.missingReferences(p)) if (unitOf.get(ref) !== id) deps.add(unitOf.get(ref)!);
    const subs = paths.map((p) => knowledge.substitute(p)!);
    out.push({
      id,
      name: unit.name === '' ? drvNameFromPath(id) : unit.name,
      ...(unit.drvPath ? { drvPath: unit.drvPath } : {}),
      paths,
      deps: [...deps].sort(),
      downloadBytes: subs.reduce((a, s) => a + (s.fileSize ?? s.narSize), 0),
      narBytes: subs.reduce((a, s) => a + s.narSize, 0),
      cache: subs[0]!.cache,
    });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Every derivation reachable from the roots, each after all the reachable derivations that use it. */
function consumersFirst(set: DerivationSet): string[] {
  const reachable = new Set<string>(set.roots);
  const queue = [...set.roots].map((r) => [r, undefined] as [string, string | undefined]);
  for (let i = 0; i < queue.length; i++) {
    const [path, by] = queue[i]!;
    const drv = set.drvs.get(path);
    if (!drv) throw new MissingDerivationError(path, by);
    for (const input of Object.keys(drv.inputDrvs)) {
      if (!reachable.has(input)) {
        reachable.add(input);
        queue.push([input, path]);
      }
    }
  }
  const users = new Map<string, number>();
  for (const path of reachable) for (const input of Object.keys(set.drvs.get(path)!.inputDrvs)) users.set(input, (users.get(input) ?? 0) + 1);
  const order = [...reachable].filter((p) => !users.has(p));
  for (let i = 0; i < order.length; i++) {
    for (const input of Object.keys(set.drvs.get(order[i]!)!.inputDrvs)) {
      const left = users.get(input)! - 1;
      users.set(input, left);
      if (left === 0) order.push(input);
    }
  }
  // A cycle leaves derivations undecidable; the plain graph builder names it.
  if (order.length < reachable.size) buildGraph(set, new Set());
  return order;
}
