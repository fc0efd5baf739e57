import { describe, expect, it } from 'vitest';
import type { Derivation, DerivationSet } from '../../src/drv/derivation.js';
import { queryMissing, type MissingKnowledge, type Substitute } from '../../src/graph/queryMissing.js';
import { testDerivation } from './drvFixtures.js';

const hash = (id: string) => id.padEnd(32, '0').replace(/[^0-9a-dfgh-np-sv-z]/g, '1').slice(0, 32);
const drvPath = (id: string) => `/nix/store/${hash(id)}-${id}.drv`;
const out = (id: string, o = 'out') => `/nix/store/${hash(`${id}${o}`)}-${id}${o === 'out' ? '' : `-${o}`}`;

function mk(id: string, inputs: Array<string | [string, string[]]>, extra: Partial<Derivation> = {}, outputs = ['out']): Derivation {
  return testDerivation({
    drvPath: drvPath(id),
    name: id,
    outputs: Object.fromEntries(outputs.map((o) => [o, { path: out(id, o), hashAlgo: '', hash: '' }])),
    inputDrvs: Object.fromEntries(inputs.map((i) => (typeof i === 'string' ? [drvPath(i), ['out']] : [drvPath(i[0]), i[1]]))),
    ...extra,
  });
}

function set(drvs: Derivation[], roots: string[]): DerivationSet {
  return { roots: roots.map(drvPath), drvs: new Map(drvs.map((d) => [d.drvPath, d])) };
}

/** Everything asked is answered: valid paths, cache contents (path → references), builder holdings. */
function knows(opts: { valid?: string[]; cached?: Record<string, string[]>; held?: Record<string, string> }): MissingKnowledge & { asked: string[] } {
  const valid = new Set(opts.valid ?? []);
  const asked: string[] = [];
  return {
    asked,
    isValid: (p) => valid.has(p),
    substitute: (p): Substitute | null => {
      asked.push(p);
      const refs = opts.cached?.[p];
      return refs ? { references: refs, narSize: 1000, fileSize: 400, cache: 'file:///cache' } : null;
    },
    heldBy: (p) => opts.held?.[p],
  };
}

const ids = (drvs: Iterable<{ drv: Derivation }>) => [...drvs].map((n) => n.drv.name).sort();

describe('queryMissing', () => {
  // bottom → middle → top; the middle output is in the cache.
  const chain = set([mk('bottom', []), mk('middle', ['bottom']), mk('top', ['middle'])], ['top']);

  it('fetches a cached middle output and neither builds nor fetches what only it needed', () => {
    const k = knows({ cached: { [out('middle')]: [out('middle')] } });
    const work = queryMissing(chain, k, { substitute: true });
    expect(ids(work.graph.nodes.values())).toEqual(['top']);
    expect(work.graph.nodes.get(drvPath('top'))!.deps).toEqual([]);
    expect(work.fetch.map((f) => [f.id, f.paths])).toEqual([[drvPath('middle'), [out('middle')]]]);
    expect(work.fetch[0]!.downloadBytes).toBe(400);
    expect(k.asked).not.toContain(out('bottom'));
    expect(work.unknown).toEqual([]);
  });

  it('builds everything with substitution off', () => {
    const work = queryMissing(chain, knows({ cached: { [out('middle')]: [] } }), { substitute: false });
    expect(ids(work.graph.nodes.values())).toEqual(['bottom', 'middle', 'top']);
    expect(work.fetch).toEqual([]);
  });

  it('fetches the runtime closure of a fetched path where it is not valid, and orders the imports', () => {
    const drvs = set([mk('lib', []), mk('app', ['lib']), mk('top', ['app'])], ['top']);
    const k = knows({ cached: { [out('app')]: [out('lib'), out('app')], [out('lib')]: [] } });
    const work = queryMissing(drvs, k, { substitute: true });
    expect(ids(work.graph.nodes.values())).toEqual(['top']);
    const app = work.fetch.find((f) => f.name === 'app')!;
    expect(app.deps).toEqual([drvPath('lib')]);
    expect(work.fetch.find((f) => f.name === 'lib')!.paths).toEqual([out('lib')]);
    // The fetched lib is not a build input of top, so top waits only for app's unit.
    expect(work.graph.nodes.get(drvPath('top'))!.deps).toEqual([]);
  });

  it('skips references that are valid already', () => {
    const drvs = set([mk('lib', []), mk('app', ['lib']), mk('top', ['app'])], ['top']);
    const work = queryMissing(drvs, knows({ valid: [out('lib')], cached: { [out('app')]: [out('lib')] } }), { substitute: true });
    expect(work.fetch.map((f) => f.name)).toEqual(['app']);
    expect(work.fetch[0]!.deps).toEqual([]);
  });

  it('builds a derivation whose cached output has a reference no cache has', () => {
    const drvs = set([mk('lib', []), mk('app', ['lib']), mk('top', ['app'])], ['top']);
    const work = queryMissing(drvs, knows({ cached: { [out('app')]: [out('lib')] } }), { substitute: true });
    expect(ids(work.graph.nodes.values())).toEqual(['app', 'lib', 'top']);
    expect(work.fetch).toEqual([]);
  });

  it('builds a derivation with allowSubstitutes = false even when a cache has it', () => {
    const drvs = set([mk('leaf', [], { allowSubstitutes: false }), mk('top', ['leaf'])], ['top']);
    const work = queryMissing(drvs, knows({ cached: { [out('leaf')]: [] } }), { substitute: true });
    expect(ids(work.graph.nodes.values())).toEqual(['leaf', 'top']);
  });

  it('builds when only some of the wanted outputs are cached, and then wants every input', () => {
    const drvs = set([mk('dep', []), mk('split', ['dep'], {}, ['out', 'dev']), mk('top', [['split', ['out', 'dev']]])], ['top']);
    const work = queryMissing(drvs, knows({ cached: { [out('split')]: [] } }), { substitute: true });
    expect(ids(work.graph.nodes.values())).toEqual(['dep', 'split', 'top']);
  });

  it('decides on the outputs consumers want, not every output', () => {
    const drvs = set([mk('dep', []), mk('split', ['dep'], {}, ['out', 'dev']), mk('top', [['split', ['out']]])], ['top']);
    const work = queryMissing(drvs, knows({ cached: { [out('split')]: [] } }), { substitute: true });
    expect(ids(work.graph.nodes.values())).toEqual(['top']);
    expect(work.fetch[0]!.paths).toEqual([out('split')]);
  });

  it('leaves outputs a builder holds where they are, and copies a root', () => {
    const drvs = set([mk('leaf', []), mk('mid', ['leaf']), mk('top', ['mid'])], ['top']);
    const work = queryMissing(drvs, knows({ held: { [out('mid')]: 'ruby' } }), { substitute: true });
    expect(ids(work.graph.nodes.values())).toEqual(['top']);
    expect(work.held).toEqual([{ drvPath: drvPath('mid'), name: 'mid', host: 'ruby', paths: [out('mid')], copyHere: false }]);
    const rootHeld = queryMissing(drvs, knows({ held: { [out('top')]: 'kana' }, cached: { [out('top')]: [] } }), { substitute: true });
    expect(rootHeld.graph.nodes.size).toBe(0);
    expect(rootHeld.fetch).toEqual([]);
    expect(rootHeld.held[0]).toMatchObject({ host: 'kana', copyHere: true });
  });

  it('asks level by level: unknown outputs stop the walk until they are answered', () => {
    const drvs = set([mk('leaf', []), mk('top', ['leaf'])], ['top']);
    const answered = new Map<string, boolean>();
    const k: MissingKnowledge = {
      isValid: (p) => answered.get(p) ?? undefined,
      substitute: (p) => (answered.has(p) ? null : undefined),
      heldBy: () => undefined,
    };
    const first = queryMissing(drvs, k, { substitute: true });
    expect(first.unknown).toEqual([out('top')]);
    expect(first.graph.nodes.size).toBe(0);
    answered.set(out('top'), false);
    const second = queryMissing(drvs, k, { substitute: true });
    expect(second.unknown).toEqual([out('leaf')]);
    answered.set(out('leaf'), false);
    const third = queryMissing(drvs, k, { substitute: true });
    expect(third.unknown).toEqual([]);
    expect(ids(third.graph.nodes.values())).toEqual(['leaf', 'top']);
  });

  it('does not look below a derivation whose cache answer is still out', () => {
    const asked: string[] = [];
    const k: MissingKnowledge = { isValid: () => false, substitute: (p) => (asked.push(p), undefined), heldBy: () => undefined };
    const work = queryMissing(chain, k, { substitute: true });
    expect(work.unknown).toEqual([out('top')]);
    expect(asked).toEqual([out('top')]);
  });

  it('counts a valid derivation as valid and wants nothing below it', () => {
    const work = queryMissing(chain, knows({ valid: [out('top')] }), { substitute: true });
    expect(work.valid).toEqual([drvPath('top')]);
    expect(work.graph.nodes.size).toBe(0);
  });

  it('follows a long runtime chain without recursion', () => {
    const n = 20_000;
    const lib = Array.from({ length: n }, (_, i) => mk(`l${i}`, i === 0 ? [] : [`l${i - 1}`]));
    const drvs = set([...lib, mk('top', [`l${n - 1}`])], ['top']);
    const cached: Record<string, string[]> = {};
    for (let i = 0; i < n; i++) cached[out(`l${i}`)] = i === 0 ? [] : [out(`l${i - 1}`)];
    const work = queryMissing(drvs, knows({ cached }), { substitute: true });
    expect(work.fetch.length).toBe(n);
    expect(work.graph.nodes.size).toBe(1);
  });
});
