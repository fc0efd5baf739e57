import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadJsonClosure } from '../../src/drv/loadClosure.js';
import { buildGraph } from '../../src/graph/buildGraph.js';
import { outputPathsOf } from '../../src/graph/outputPaths.js';
import { isStorePath } from '../../src/storePath/storePath.js';

// The DAG `offload plan` shows when given nothing else: real `nix show-derivation -r`
// output of a toy toolchain instantiated with Nix 2.8.
const text = readFileSync(new URL('../../fixtures/sample-dag.json', import.meta.url), 'utf8');
const set = loadJsonClosure(text, 'fixtures/sample-dag.json');
const byName = (name: string) => [...set.drvs.values()].find((d) => d.name === name)!;

describe('fixtures/sample-dag.json', () => {
  it('is one app and its toolchain: 12 derivations with valid store paths', () => {
    expect(set.drvs.size).toBe(12);
    expect(set.roots.map((r) => set.drvs.get(r)!.name)).toEqual(['app-1.0']);
    for (const drv of set.drvs.values()) {
      expect(isStorePath(drv.drvPath)).toBe(true);
      for (const p of outputPathsOf(drv)) expect(isStorePath(p)).toBe(true);
    }
  });

  it('has the cases the scheduler must handle', () => {
    const tarball = byName('bootstrap-tools.tar.xz');
    expect(tarball.isBuiltin && tarball.isFixedOutput && tarball.preferLocalBuild).toBe(true);
    expect(byName('gcc-14.2.0').requiredSystemFeatures).toEqual(['big-parallel']);
    const config = byName('app-config.json');
    expect(config.preferLocalBuild).toBe(true);
    expect(config.allowSubstitutes).toBe(false);
    expect(Object.keys(byName('glibc-2.40-36').outputs).sort()).toEqual(['bin', 'dev', 'out']);
    expect(Object.values(byName('gcc-14.2.0').inputDrvs)).toContainEqual(['bin', 'dev']);
  });

  it('builds bootstrap first and the app last', () => {
    const graph = buildGraph(set, new Set());
    const order = graph.order.map((p) => set.drvs.get(p)!.name);
    expect(order).toHaveLength(12);
    expect(order.at(-1)).toBe('app-1.0');
    expect(order.indexOf('bootstrap-tools.tar.xz')).toBeLessThan(order.indexOf('bootstrap-tools'));
    expect(order.indexOf('gcc-stage1-14.2.0')).toBeLessThan(order.indexOf('glibc-2.40-36'));
    expect(order.indexOf('glibc-2.40-36')).toBeLessThan(order.indexOf('gcc-14.2.0'));
    expect(order.indexOf('stdenv-linux')).toBeLessThan(order.indexOf('zlib-1.3.1'));
  });

  it('needs only the app and its config once the toolchain and libraries are built', () => {
    const built = [...set.drvs.values()].filter((d) => !['app-1.0', 'app-config.json'].includes(d.name));
    const graph = buildGraph(set, new Set(built.flatMap(outputPathsOf)));
    expect(graph.order.map((p) => set.drvs.get(p)!.name).sort()).toEqual(['app-1.0', 'app-config.json']);
    expect(graph.alreadyValid.map((p) => set.drvs.get(p)!.name).sort()).toEqual(['curl-8.11.0', 'openssl-3.3.2', 'stdenv-linux', 'zlib-1.3.1']);
  });
});
