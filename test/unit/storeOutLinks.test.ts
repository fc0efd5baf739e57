import { describe, expect, it } from 'vitest';
import type { Derivation } from '../../src/drv/derivation.js';
import { outLinks } from '../../src/store/outLinks.js';
import { testDerivation } from './drvFixtures.js';

const drv = (name: string, outputs: string[]): Derivation =>
  testDerivation({
    drvPath: `/nix/store/${name.padEnd(32, 'a').slice(0, 32)}-${name}.drv`,
    name,
    outputs: Object.fromEntries(outputs.map((o) => [o, { path: `/nix/store/${'b'.repeat(32)}-${name}${o === 'out' ? '' : `-${o}`}`, hashAlgo: '', hash: '' }])),
  });

const hello = drv('hello', ['out', 'dev', 'man']);
const zlib = drv('zlib', ['out', 'dev']);
const split = drv('split', ['bin', 'lib']);
const drvs = new Map([hello, zlib, split].map((d) => [d.drvPath, d]));
const names = (roots: Parameters<typeof outLinks>[0], outLink = 'result') => outLinks(roots, drvs, outLink, '/work').map((l) => [l.link, l.output]);

describe('result links, named as nix-build names them', () => {
  it('result for the first derivation, result-2, result-3 for the next; out only unless outputs are asked for', () => {
    expect(names([{ drvPath: hello.drvPath }, { drvPath: zlib.drvPath }])).toEqual([
      ['/work/result', 'out'],
      ['/work/result-2', 'out'],
    ]);
  });

  it('outputs other than out get their name appended, after the counter', () => {
    expect(names([{ drvPath: hello.drvPath, outputs: ['out', 'dev'] }, { drvPath: zlib.drvPath, outputs: ['dev'] }])).toEqual([
      ['/work/result', 'out'],
      ['/work/result-dev', 'dev'],
      ['/work/result-2-dev', 'dev'],
    ]);
  });

  it('one counter per derivation, however often it is asked for; --out-link names the prefix, relative to the working directory', () => {
    expect(names([{ drvPath: hello.drvPath, outputs: ['man'] }, { drvPath: zlib.drvPath }, { drvPath: hello.drvPath, outputs: ['dev'] }], 'out/link')).toEqual([
      ['/work/out/link-man', 'man'],
      ['/work/out/link-2', 'out'],
      ['/work/out/link-dev', 'dev'],
    ]);
    expect(names([{ drvPath: hello.drvPath }], '/abs/r')).toEqual([['/abs/r', 'out']]);
  });

  it('a derivation without out gets every output (nix-build would refuse it)', () => {
    expect(names([{ drvPath: split.drvPath }])).toEqual([
      ['/work/result-bin', 'bin'],
      ['/work/result-lib', 'lib'],
    ]);
  });
});
