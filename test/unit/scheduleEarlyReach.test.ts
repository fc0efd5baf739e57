import { describe, expect, it } from 'vitest';
import { likelyFirstBuilders, mayReachBuildersEarly, type BuilderFacts } from '../../src/schedule/earlyReach.js';

const builder = (hostName: string, over: Partial<BuilderFacts> = {}): BuilderFacts => ({ hostName, systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], maxJobs: 2, ...over });
const drv = (name: string, over: { system?: string; requiredSystemFeatures?: string[]; isBuiltin?: boolean } = {}) => ({
  drvPath: `/nix/store/${'a'.repeat(32)}-${name}.drv`,
  system: 'x86_64-linux',
  requiredSystemFeatures: [],
  isBuiltin: false,
  ...over,
});

describe('mayReachBuildersEarly', () => {
  it('lets the builders be reached when every derivation of the closure fits one of them', () => {
    const builders = [builder('ruby'), builder('kana', { systems: ['aarch64-linux'], supportedFeatures: ['kvm'] })];
    expect(mayReachBuildersEarly([drv('a'), drv('b', { system: 'aarch64-linux', requiredSystemFeatures: ['kvm'] })], builders)).toBe(true);
  });

  it('waits when one fits no builder: it may be bad input (no machine fits) or a local build', () => {
    expect(mayReachBuildersEarly([drv('a'), drv('gpu', { requiredSystemFeatures: ['gpu'] })], [builder('ruby')])).toBe(false);
    expect(mayReachBuildersEarly([drv('arm', { system: 'aarch64-linux' })], [builder('ruby')])).toBe(false);
    // A builder with mandatory features takes only jobs that ask for them.
    expect(mayReachBuildersEarly([drv('plain')], [builder('big', { mandatoryFeatures: ['big-parallel'], supportedFeatures: ['big-parallel'] })])).toBe(false);
    expect(mayReachBuildersEarly([drv('a')], [builder('off', { maxJobs: 0 })])).toBe(false);
  });

  it('leaves builtin derivations out (they run locally) and needs a builder at all', () => {
    expect(mayReachBuildersEarly([drv('a'), drv('fetch', { system: 'builtin', isBuiltin: true })], [builder('ruby')])).toBe(true);
    expect(mayReachBuildersEarly([drv('a')], [])).toBe(false);
  });

  it('waits for a builder whose systems Nix has not said yet (a Nix-format line without systems)', () => {
    expect(mayReachBuildersEarly([drv('a')], [builder('ruby', { systems: [] })])).toBe(false);
  });
});

describe('likelyFirstBuilders', () => {
  const fast = (hostName: string, speedFactor: number, over: Partial<BuilderFacts> = {}) => ({ ...builder(hostName, over), speedFactor });
  const node = (name: string, deps: string[] = [], over: Parameters<typeof drv>[1] = {}) => ({ ...drv(name, over), inputDrvs: Object.fromEntries(deps.map((d) => [drv(d).drvPath, ['out']])) });

  it('names the first builder in the machines file for one derivation among equals', () => {
    expect(likelyFirstBuilders([node('only')], [fast('aquamarine', 1), fast('ruby', 1)])).toEqual(['aquamarine']);
  });

  it('counts only the leaves of the closure: a chain needs one builder', () => {
    expect(likelyFirstBuilders([node('a'), node('b', ['a']), node('c', ['b'])], [fast('aquamarine', 1), fast('ruby', 1)])).toEqual(['aquamarine']);
  });

  it('takes more builders when the leaves outnumber the first one\'s slots, fastest first', () => {
    const leaves = ['a', 'b', 'c'].map((n) => node(n));
    expect(likelyFirstBuilders(leaves, [fast('slow', 1), fast('quick', 4), fast('spare', 1)])).toEqual(['quick', 'slow']);
  });

  it('takes a builder for each system the leaves need, and none for builtins', () => {
    const closure = [node('x86'), node('arm', [], { system: 'aarch64-linux' }), node('fetch', [], { isBuiltin: true })];
    const builders = [fast('aquamarine', 1), fast('ruby', 1), fast('graviton', 1, { systems: ['aarch64-linux'] })];
    expect(likelyFirstBuilders(closure, builders)).toEqual(['aquamarine', 'graviton']);
  });

  it('names none for a closure of builtins only, or builders without slots', () => {
    expect(likelyFirstBuilders([node('fetch', [], { isBuiltin: true })], [fast('aquamarine', 1)])).toEqual([]);
    expect(likelyFirstBuilders([node('a')], [fast('aquamarine', 1, { maxJobs: 0 })])).toEqual([]);
  });
});
