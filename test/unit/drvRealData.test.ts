import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAGS } from './realDags.js';
import { parseDrv } from '../../src/drv/parseDrv.js';
import { loadDrvClosure, loadJsonClosure } from '../../src/drv/loadClosure.js';
import { printDrv } from '../../src/drv/printDrv.js';

const HELLO_ROOT = '/nix/store/0ia8zz7yjzv9qqzh1pwn64rwlqdhywcp-hello-2.12.1.drv';

function readDag(file: string): string {
  return gunzipSync(readFileSync(join(DAGS, file))).toString('utf8');
}

describe('real hello .drv files', () => {
  let root: string;
  let names: string[];

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'offload-hello-drvs-'));
    // The archive holds nix/store/<hash>-<name>.drv.
    execFileSync('tar', ['xzf', join(DAGS, 'hello-drvs.tar.gz'), '-C', root]);
    names = readdirSync(join(root, 'nix/store'));
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('parses all 253 files', () => {
    expect(names).toHaveLength(253);
    let fixedOutput = 0;
    let builtin = 0;
    for (const name of names) {
      const drv = parseDrv(readFileSync(join(root, 'nix/store', name), 'utf8'), `/nix/store/${name}`);
      if (drv.isFixedOutput) fixedOutput++;
      if (drv.isBuiltin) builtin++;
    }
    // Counts from the data set's README.
    expect(fixedOutput).toBe(98);
    expect(builtin).toBe(97);
  });

  it('loads the same closure from .drv files as nix show-derivation -r reports', async () => {
    const fromJson = loadJsonClosure(readDag('hello.json.gz'), 'hello.json.gz');
    expect(fromJson.roots).toEqual([HELLO_ROOT]);
    const fromDrvs = await loadDrvClosure([HELLO_ROOT], { storeRoot: root });
    expect(fromDrvs.drvs.size).toBe(253);
    expect([...fromDrvs.drvs.keys()].sort()).toEqual([...fromJson.drvs.keys()].sort());
    for (const [path, drv] of fromJson.drvs) expect(fromDrvs.drvs.get(path), path).toStrictEqual(drv);
  });
});

describe('real show-derivation DAGs', () => {
  const expected: Record<string, { root: string; size: number; fixedOutput: number; bigParallel: number }> = {
    'hello.json.gz': { root: 'hello-2.12.1', size: 253, fixedOutput: 98, bigParallel: 0 },
    'python3.json.gz': { root: 'python3-3.12.7', size: 336, fixedOutput: 148, bigParallel: 0 },
    'git.json.gz': { root: 'git-2.47.0', size: 716, fixedOutput: 326, bigParallel: 0 },
    'firefox.json.gz': { root: 'firefox-132.0.2', size: 2152, fixedOutput: 1038, bigParallel: 4 },
    'hello-aarch64.json.gz': { root: 'hello-2.12.1', size: 253, fixedOutput: 98, bigParallel: 0 },
  };
  const files = readdirSync(DAGS).filter((f) => f.endsWith('.json.gz'));

  it('has the DAGs this test knows about', () => {
    expect(files.sort()).toEqual(Object.keys(expected).sort());
  });

  it.each(files)('reads %s with the counts its README gives', (file) => {
    const set = loadJsonClosure(readDag(file), file);
    const want = expected[file]!;
    expect(set.roots.map((r) => set.drvs.get(r)!.name)).toEqual([want.root]);
    expect(set.drvs.size).toBe(want.size);
    const drvs = [...set.drvs.values()];
    expect(drvs.filter((d) => d.isFixedOutput)).toHaveLength(want.fixedOutput);
    expect(drvs.filter((d) => d.requiredSystemFeatures.includes('big-parallel'))).toHaveLength(want.bigParallel);
  });
});

// How fast: `npm run bench -- plan` times parsing these texts; a test on a shared machine cannot.
describe('the firefox closure as .drv text', () => {
  it('parses each of the 2152 printed derivations back to itself', () => {
    const set = loadJsonClosure(readDag('firefox.json.gz'), 'firefox.json.gz');
    const texts = [...set.drvs.values()].map((d) => [d.drvPath, printDrv(d)] as const);
    expect(texts).toHaveLength(2152);
    for (const [drvPath, text] of texts) expect(parseDrv(text, drvPath), drvPath).toStrictEqual(set.drvs.get(drvPath));
  });
});
