import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DAGS } from './realDags.js';
import type { Derivation, DerivationSet } from '../../src/drv/derivation.js';
import { loadJsonClosure } from '../../src/drv/loadClosure.js';
import { buildGraph, type BuildGraph } from '../../src/graph/buildGraph.js';
import { DependencyCycleError, MissingDerivationError } from '../../src/graph/errors.js';
import { allOutputPaths, outputPathsOf } from '../../src/graph/outputPaths.js';
import { testDerivation } from './drvFixtures.js';

/** Store paths from a number, so tests can make thousands of distinct ones. */
function hashOf(n: number): string {
  // Base-32 digits 0-9a-v, with the four letters Nix leaves out swapped for the four it adds.
  const swap: Record<string, string> = { e: 'w', o: 'x', t: 'y', u: 'z' };
  return n
    .toString(32)
    .padStart(32, '0')
    .replace(/[eotu]/g, (c) => swap[c]!);
}
const drvPath = (id: string | number) => `/nix/store/${hashOf(typeof id === 'number' ? id : id.charCodeAt(0))}-${id}.drv`;
const outPath = (id: string | number, output = 'out') =>
  `/nix/store/${hashOf((typeof id === 'number' ? id : id.charCodeAt(0)) + 1_000_000)}-${id}-${output}`;

function mkDrv(id: string | number, inputs: Array<string | number>, outputs: string[] = ['out']): Derivation {
  return testDerivation({
    drvPath: drvPath(id),
    name: String(id),
    outputs: Object.fromEntries(outputs.map((o) => [o, { path: outPath(id, o), hashAlgo: '', hash: '' }])),
    inputDrvs: Object.fromEntries(inputs.map((i) => [drvPath(i), ['out']])),
  });
}

function mkSet(graph: Record<string, Array<string>>, roots: string[]): DerivationSet {
  return {
    roots: roots.map(drvPath),
    drvs: new Map(Object.entries(graph).map(([id, inputs]) => [drvPath(id), mkDrv(id, inputs)])),
  };
}

const names = (paths: string[]) => paths.map((p) => p.slice(44, -4));

/** Checked with plain loops: one expect per edge is far too slow for the big DAGs. */
function expectTopological(graph: BuildGraph): void {
  const position = new Map(graph.order.map((p, i) => [p, i]));
  expect(position.size).toBe(graph.nodes.size);
  const problems: string[] = [];
  for (const [path, node] of graph.nodes) {
    for (const dep of node.deps) if (!(position.get(dep)! < position.get(path)!)) problems.push(`${dep} after ${path}`);
    for (const dependent of node.dependents) {
      if (!graph.nodes.get(dependent)!.deps.includes(path)) problems.push(`${dependent} lacks dep ${path}`);
    }
  }
  expect(problems).toEqual([]);
}

/** A plain recursive-free restatement of the rule, to compare buildGraph with. */
function referenceWalk(set: DerivationSet, validOutputs: ReadonlySet<string>) {
  const expectedNeeded = new Set<string>();
  const expectedValid = new Set<string>();
  const stack = [...set.roots];
  const seen = new Set(stack);
  while (stack.length > 0) {
    const p = stack.pop()!;
    const drv = set.drvs.get(p)!;
    if (outputPathsOf(drv).every((o) => validOutputs.has(o))) {
      expectedValid.add(p);
      continue;
    }
    expectedNeeded.add(p);
    for (const input of Object.keys(drv.inputDrvs)) {
      if (!seen.has(input)) {
        seen.add(input);
        stack.push(input);
      }
    }
  }
  return { expectedNeeded, expectedValid };
}

describe('buildGraph', () => {
  it('orders a chain deps first and links both directions', () => {
    const g = buildGraph(mkSet({ a: ['b'], b: ['c'], c: [] }, ['a']), new Set());
    expect(names(g.order)).toEqual(['c', 'b', 'a']);
    expect(names(g.nodes.get(drvPath('b'))!.deps)).toEqual(['c']);
    expect(names(g.nodes.get(drvPath('b'))!.dependents)).toEqual(['a']);
    expect(g.roots).toEqual([drvPath('a')]);
    expect(g.alreadyValid).toEqual([]);
  });

  it('builds a diamond\'s shared input once, before both sides', () => {
    const g = buildGraph(mkSet({ a: ['b', 'c'], b: ['d'], c: ['d'], d: [] }, ['a']), new Set());
    expect(g.order).toHaveLength(4);
    expect(names(g.order)[0]).toBe('d');
    expect(names(g.order)[3]).toBe('a');
    expect(names(g.nodes.get(drvPath('d'))!.dependents).sort()).toEqual(['b', 'c']);
    expectTopological(g);
  });

  it('skips valid derivations and whatever only they needed', () => {
    // a → b → c → d; b is valid, so c and d are not needed at all.
    const set = mkSet({ a: ['b'], b: ['c'], c: ['d'], d: [] }, ['a']);
    const g = buildGraph(set, new Set([outPath('b')]));
    expect(names(g.order)).toEqual(['a']);
    expect(g.nodes.get(drvPath('a'))!.deps).toEqual([]);
    expect(names(g.alreadyValid)).toEqual(['b']);
  });

  it('still builds an input of a valid derivation when another needed node uses it', () => {
    // a → {b, e}; b → c (b valid); e → c. c must be built for e.
    const set = mkSet({ a: ['b', 'e'], b: ['c'], e: ['c'], c: [] }, ['a']);
    const g = buildGraph(set, new Set([outPath('b')]));
    expect(names(g.order)).toEqual(['c', 'e', 'a']);
    expect(names(g.alreadyValid)).toEqual(['b']);
  });

  it('skips a valid root entirely', () => {
    const g = buildGraph(mkSet({ a: ['b'], b: [] }, ['a']), new Set([outPath('a')]));
    expect(g.nodes.size).toBe(0);
    expect(g.order).toEqual([]);
    expect(names(g.alreadyValid)).toEqual(['a']);
  });

  it('builds a derivation with any output missing', () => {
    const set: DerivationSet = { roots: [drvPath('a')], drvs: new Map([[drvPath('a'), mkDrv('a', [], ['out', 'dev'])]]) };
    expect(buildGraph(set, new Set([outPath('a', 'out')])).order).toEqual([drvPath('a')]);
    expect(buildGraph(set, new Set([outPath('a', 'out'), outPath('a', 'dev')])).order).toEqual([]);
  });

  it('a root wanting only some outputs (drv^out) needs only those valid', () => {
    const set: DerivationSet = {
      roots: [drvPath('a')],
      rootOutputs: new Map([[drvPath('a'), ['out']]]),
      drvs: new Map([[drvPath('a'), mkDrv('a', [], ['out', 'dev'])]]),
    };
    expect(buildGraph(set, new Set([outPath('a', 'out')])).order).toEqual([]);
    expect(names(buildGraph(set, new Set([outPath('a', 'out')])).alreadyValid)).toEqual(['a']);
    expect(buildGraph(set, new Set([outPath('a', 'dev')])).order).toEqual([drvPath('a')]);
  });

  it('a root skipped for its wanted outputs is still built when another root needs all of it', () => {
    const a = mkDrv('a', [], ['out', 'dev']);
    const b = mkDrv('b', ['a']);
    const set: DerivationSet = { roots: [drvPath('a'), drvPath('b')], rootOutputs: new Map([[drvPath('a'), ['out']]]), drvs: new Map([[a.drvPath, a], [b.drvPath, b]]) };
    const g = buildGraph(set, new Set([outPath('a', 'out')]));
    expect(names(g.order)).toEqual(['a', 'b']);
    expect(g.nodes.get(drvPath('b'))!.deps).toEqual([drvPath('a')]);
    expect(g.alreadyValid).toEqual([]);
  });

  it('never treats a content-addressed output with no path as valid', () => {
    const a = mkDrv('a', []);
    a.outputs['out'] = { path: '', hashAlgo: 'r:sha256', hash: '' };
    const g = buildGraph({ roots: [a.drvPath], drvs: new Map([[a.drvPath, a]]) }, new Set(['']));
    expect(g.order).toEqual([a.drvPath]);
  });

  it('names a cycle', () => {
    const set = mkSet({ a: ['b'], b: ['c'], c: ['d'], d: ['b'] }, ['a']);
    let error: unknown;
    try {
      buildGraph(set, new Set());
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DependencyCycleError);
    const cycle = names((error as DependencyCycleError).cycle);
    expect(cycle[0]).toBe(cycle[cycle.length - 1]);
    expect(cycle.slice(0, -1).sort()).toEqual(['b', 'c', 'd']);
    expect((error as Error).message).toContain(' → ');
  });

  it('names a derivation that depends on itself', () => {
    const error = (() => {
      try {
        buildGraph(mkSet({ a: ['a'] }, ['a']), new Set());
      } catch (e) {
        return e as DependencyCycleError;
      }
    })();
    expect(error?.cycle).toEqual([drvPath('a'), drvPath('a')]);
  });

  it('names an input that is not in the set and who needs it', () => {
    const set = mkSet({ a: ['b'] }, ['a']);
    expect(() => buildGraph(set, new Set())).toThrow(MissingDerivationError);
    expect(() => buildGraph(set, new Set())).toThrow(`derivation ${drvPath('b')}, an input of ${drvPath('a')}`);
  });

  // Allocation-heavy; shared CI machines can take many seconds for 100,000 nodes.
  const SCALE_TIMEOUT = 120_000;

  it('handles a 100,000-deep chain without recursion', () => {
    const n = 100_000;
    const chain = new Map<string, Derivation>();
    for (let i = 0; i < n; i++) chain.set(drvPath(i), mkDrv(i, i + 1 < n ? [i + 1] : []));
    const deep = buildGraph({ roots: [drvPath(0)], drvs: chain }, new Set());
    expect(deep.order).toHaveLength(n);
    expect(deep.order[0]).toBe(drvPath(n - 1));
    expect(deep.order[n - 1]).toBe(drvPath(0));
  }, SCALE_TIMEOUT);

  it('handles a 100,000-wide fan', () => {
    const n = 100_000;
    const fan = new Map<string, Derivation>();
    const leaves = Array.from({ length: n }, (_, i) => i + 1);
    fan.set(drvPath(0), mkDrv(0, leaves));
    for (const i of leaves) fan.set(drvPath(i), mkDrv(i, [n + 1]));
    fan.set(drvPath(n + 1), mkDrv(n + 1, []));
    const wide = buildGraph({ roots: [drvPath(0)], drvs: fan }, new Set());
    expect(wide.order).toHaveLength(n + 2);
    expect(wide.order[0]).toBe(drvPath(n + 1));
    expect(wide.nodes.get(drvPath(n + 1))!.dependents).toHaveLength(n);
  }, SCALE_TIMEOUT);

  it('property: order is topological and exactly the reachable, not-valid derivations', () => {
    const dag = fc.integer({ min: 1, max: 40 }).chain((size) =>
      fc.record({
        // Edges only point to higher ids, so the graph is acyclic.
        inputs: fc.array(fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { maxLength: 4 }), { minLength: size, maxLength: size }),
        valid: fc.uniqueArray(fc.integer({ min: 0, max: size - 1 })),
        roots: fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { minLength: 1, maxLength: 3 }),
      }),
    );
    fc.assert(
      fc.property(dag, ({ inputs, valid, roots }) => {
        const drvs = new Map<string, Derivation>();
        inputs.forEach((ins, i) => drvs.set(drvPath(i), mkDrv(i, ins.filter((j) => j > i))));
        const validOutputs = new Set(valid.map((i) => outPath(i)));
        const g = buildGraph({ roots: roots.map(drvPath), drvs }, validOutputs);
        expectTopological(g);
        const { expectedNeeded, expectedValid } = referenceWalk({ roots: roots.map(drvPath), drvs }, validOutputs);
        expect(new Set(g.nodes.keys())).toEqual(expectedNeeded);
        expect(new Set(g.alreadyValid)).toEqual(expectedValid);
        for (const node of g.nodes.values()) {
          const neededInputs = Object.keys(node.drv.inputDrvs).filter((i) => expectedNeeded.has(i));
          expect(node.deps.sort()).toEqual(neededInputs.sort());
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('allOutputPaths', () => {
  it('lists every known output once, leaving out unknown content-addressed paths', () => {
    const set = mkSet({ a: ['b'], b: [] }, ['a']);
    set.drvs.get(drvPath('a'))!.outputs['dev'] = { path: outPath('a', 'dev'), hashAlgo: '', hash: '' };
    set.drvs.get(drvPath('b'))!.outputs['ca'] = { path: '', hashAlgo: 'r:sha256', hash: '' };
    expect(allOutputPaths(set).sort()).toEqual([outPath('a'), outPath('a', 'dev'), outPath('b')].sort());
  });
});

describe('graphs of the real DAGs', () => {
  const files = readdirSync(DAGS).filter((f) => f.endsWith('.json.gz'));
  it.each(files)('%s: everything to build on an empty store; only the rest once downloads are present', (file) => {
    const set = loadJsonClosure(gunzipSync(readFileSync(join(DAGS, file))).toString('utf8'), file);
    const all = buildGraph(set, new Set());
    expect(all.nodes.size).toBe(set.drvs.size);
    expectTopological(all);

    const downloads = [...set.drvs.values()].filter((d) => d.isFixedOutput);
    const valid = new Set(downloads.flatMap(outputPathsOf));
    const g = buildGraph(set, valid);
    const { expectedNeeded, expectedValid } = referenceWalk(set, valid);
    expect(new Set(g.nodes.keys())).toEqual(expectedNeeded);
    expect(new Set(g.alreadyValid)).toEqual(expectedValid);
    // Tools only downloads needed (curl for fetchurl, ...) drop out with them.
    expect(g.nodes.size).toBeLessThan(set.drvs.size - downloads.length);
    expectTopological(g);
    for (const node of g.nodes.values()) expect(node.drv.isFixedOutput).toBe(false);

    const everything = buildGraph(set, new Set(allOutputPaths(set)));
    expect(everything.nodes.size).toBe(0);
    expect(everything.alreadyValid).toEqual(set.roots);
  });
});
