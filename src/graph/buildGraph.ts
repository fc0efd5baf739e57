import type { Derivation, DerivationSet } from '../drv/derivation.js';
import { DependencyCycleError, MissingDerivationError } from './errors.js';
import { allOutputsValid, wantedOutputsValid } from './outputPaths.js';

export interface GraphNode {
  drv: Derivation;
  /** Input derivations that also need building (valid inputs are absent). */
  deps: string[];
  /** Nodes that need this one built first. */
  dependents: string[];
}

export interface BuildGraph {
  roots: string[];
  /** Only derivations that need building. */
  nodes: Map<string, GraphNode>;
  /** Topological: every node comes after its deps. */
  order: string[];
  /** Reached derivations skipped because all their outputs are valid. */
  alreadyValid: string[];
}

/**
 * Works out what must be built for the roots. A derivation needs building
 * when any of its outputs is not in `validOutputs` (for a root: any of its
 * wanted outputs); a valid one is skipped along with everything only it
 * needed. Iterative throughout, so
 * DAGs of any depth work.
 */
export function buildGraph(set: DerivationSet, validOutputs: ReadonlySet<string>): BuildGraph {
  const { needed, alreadyValid } = findNeeded(set, validOutputs);
  return graphOfNeeded(set.roots, needed, alreadyValid);
}

/** The build graph over derivations already known to need building (deps among them only). */
export function graphOfNeeded(roots: string[], needed: Derivation[], alreadyValid: string[]): BuildGraph {
  const nodes = linkNodes(needed);
  return { roots, nodes, order: topologicalOrder(nodes), alreadyValid };
}

/**
 * Breadth-first from the roots, not descending into derivations whose
 * outputs are valid. A root needs only its wanted outputs valid; a
 * derivation that something to build depends on needs all of them, even
 * when it was skipped as a root first (`a.drv^out` and `b.drv` needing a's
 * `dev`).
 */
function findNeeded(set: DerivationSet, validOutputs: ReadonlySet<string>) {
  const needed: Derivation[] = [];
  const state = new Map<string, 'needed' | 'valid' | 'validAsRoot'>();
  const queue: Array<[drvPath: string, referencedBy: string | undefined]> = [];
  const visit = (drvPath: string, referencedBy: string | undefined, wanted: readonly string[] | undefined): void => {
    const before = state.get(drvPath);
    if (before === 'needed' || before === 'valid' || (before === 'validAsRoot' && wanted !== undefined)) return;
    const drv = set.drvs.get(drvPath);
    if (drv === undefined) throw new MissingDerivationError(drvPath, referencedBy);
    if (wantedOutputsValid(drv, wanted, validOutputs)) {
      state.set(drvPath, wanted === undefined || allOutputsValid(drv, validOutputs) ? 'valid' : 'validAsRoot');
      return;
    }
    state.set(drvPath, 'needed');
    needed.push(drv);
    for (const input of Object.keys(drv.inputDrvs)) queue.push([input, drvPath]);
  };
  for (const root of new Set(set.roots)) visit(root, undefined, set.rootOutputs?.get(root));
  for (let i = 0; i < queue.length; i++) visit(queue[i]![0], queue[i]![1], undefined);
  const alreadyValid = [...state].filter(([, s]) => s !== 'needed').map(([p]) => p);
  return { needed, alreadyValid };
}

function linkNodes(needed: Derivation[]): Map<string, GraphNode> {
  const nodes = new Map<string, GraphNode>();
  for (const drv of needed) nodes.set(drv.drvPath, { drv, deps: [], dependents: [] });
  for (const node of nodes.values()) {
    for (const input of Object.keys(node.drv.inputDrvs)) {
      const dep = nodes.get(input);
      if (dep === undefined) continue;
      node.deps.push(input);
      dep.dependents.push(node.drv.drvPath);
    }
  }
  return nodes;
}

/** Kahn's algorithm; nodes left over sit on or behind a cycle. */
function topologicalOrder(nodes: Map<string, GraphNode>): string[] {
  const waitingOn = new Map<string, number>();
  const order: string[] = [];
  for (const [path, node] of nodes) {
    waitingOn.set(path, node.deps.length);
    if (node.deps.length === 0) order.push(path);
  }
  for (let i = 0; i < order.length; i++) {
    for (const dependent of nodes.get(order[i]!)!.dependents) {
      const left = waitingOn.get(dependent)! - 1;
      waitingOn.set(dependent, left);
      if (left === 0) order.push(dependent);
    }
  }
  if (order.length < nodes.size) throw new DependencyCycleError(findCycle(nodes, waitingOn));
  return order;
}

/**
 * Every leftover node still waits on a leftover dep, so following such deps
 * must eventually revisit a node: the path from its first visit is a cycle.
 */
function findCycle(nodes: Map<string, GraphNode>, waitingOn: Map<string, number>): string[] {
  const stuck = (p: string) => (waitingOn.get(p) ?? 0) > 0;
  let current = [...nodes.keys()].find(stuck)!;
  const walk: string[] = [];
  const positionInWalk = new Map<string, number>();
  while (!positionInWalk.has(current)) {
    positionInWalk.set(current, walk.length);
    walk.push(current);
    current = nodes.get(current)!.deps.find(stuck)!;
  }
  const cycle = walk.slice(positionInWalk.get(current));
  return [...cycle, current];
}
