import { describe, expect, it } from 'vitest';
import { loadDrvClosure } from '../../src/drv/loadClosure.js';
import { DrvNotFoundError, DrvParseError, DrvReadError } from '../../src/drv/errors.js';
import { InvalidStorePathError } from '../../src/storePath/storePath.js';

const h = (c: string) => c.repeat(32);
const drvPath = (c: string) => `/nix/store/${h(c)}-p${c}.drv`;

function drvText(c: string, inputs: string[]): string {
  const inputList = inputs.map((i) => `("${drvPath(i)}",["out"])`).join(',');
  return `Derive([("out","/nix/store/${h(c)}-p${c}","","")],[${inputList}],[],"x86_64-linux","/bin/sh",[],[("name","p${c}")])`;
}

/** An in-memory store; records how many reads run at once. */
function memoryStore(graph: Record<string, string[]>, root = '') {
  const files = new Map(Object.entries(graph).map(([c, inputs]) => [root + drvPath(c), drvText(c, inputs)]));
  const stats = { active: 0, maxActive: 0, reads: [] as string[] };
  const readFile = async (file: string): Promise<string> => {
    stats.reads.push(file);
    stats.active++;
    stats.maxActive = Math.max(stats.maxActive, stats.active);
    await new Promise((r) => setTimeout(r, 1));
    stats.active--;
    const text = files.get(file);
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${file}`), { code: 'ENOENT' });
    return text;
  };
  return { readFile, stats };
}

describe('loadDrvClosure', () => {
  it('follows inputDrvs to the whole closure, reading each file once, in breadth-first order', async () => {
    // Diamond: 1 → {2, 3} → 4
    const { readFile, stats } = memoryStore({ '1': ['2', '3'], '2': ['4'], '3': ['4'], '4': [] });
    const set = await loadDrvClosure([drvPath('1')], { readFile });
    expect(set.roots).toEqual([drvPath('1')]);
    expect([...set.drvs.keys()]).toEqual(['1', '2', '3', '4'].map(drvPath));
    expect(stats.reads.sort()).toEqual(['1', '2', '3', '4'].map(drvPath).sort());
    expect(set.drvs.get(drvPath('4'))!.name).toBe('p4');
  });

  it('bounds concurrent reads', async () => {
    const graph: Record<string, string[]> = { a: [] };
    const leaves = '0123456789bcdfghijklmnpqrsvwxyz'.split('');
    graph['a'] = leaves;
    for (const l of leaves) graph[l] = [];
    const { readFile, stats } = memoryStore(graph);
    const set = await loadDrvClosure([drvPath('a')], { readFile, concurrency: 4 });
    expect(set.drvs.size).toBe(leaves.length + 1);
    expect(stats.maxActive).toBe(4);
  });

  it('maps store paths to files under storeRoot', async () => {
    const { readFile, stats } = memoryStore({ '1': ['2'], '2': [] }, '/tmp/unpacked');
    const set = await loadDrvClosure([drvPath('1')], { readFile, storeRoot: '/tmp/unpacked' });
    expect(set.drvs.size).toBe(2);
    expect(stats.reads).toEqual([`/tmp/unpacked${drvPath('1')}`, `/tmp/unpacked${drvPath('2')}`]);
    expect(set.drvs.get(drvPath('2'))!.drvPath).toBe(drvPath('2'));
  });

  it('names the missing file and the derivation that referenced it', async () => {
    const { readFile } = memoryStore({ '1': ['2'], '2': ['3'] });
    const error = await loadDrvClosure([drvPath('1')], { readFile, fileFor: (p) => `/x${p}` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DrvNotFoundError);
    // fileFor changes where files are looked for, so nothing is found under /x.
    expect((error as DrvNotFoundError).referencedBy).toBeUndefined();

    const e2 = (await loadDrvClosure([drvPath('1')], { readFile }).catch((e: unknown) => e)) as DrvNotFoundError;
    expect(e2).toBeInstanceOf(DrvNotFoundError);
    expect(e2.message).toBe(`derivation ${drvPath('3')}, an input of ${drvPath('2')}, does not exist.`);
  });

  it('reports the real file in parse errors', async () => {
    const readFile = async () => 'Derive(oops';
    const error = (await loadDrvClosure([drvPath('1')], { readFile, storeRoot: '/r' }).catch((e: unknown) => e)) as DrvParseError;
    expect(error).toBeInstanceOf(DrvParseError);
    expect(error.file).toBe(`/r${drvPath('1')}`);
  });

  it('wraps other read failures', async () => {
    const readFile = async () => {
      throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    };
    await expect(loadDrvClosure([drvPath('1')], { readFile })).rejects.toThrow(DrvReadError);
    await expect(loadDrvClosure([drvPath('1')], { readFile })).rejects.toThrow(/could not read derivation file .*permission denied/);
  });

  it('rejects roots that are not derivation paths before reading anything', async () => {
    const { readFile, stats } = memoryStore({});
    await expect(loadDrvClosure(['/etc/passwd'], { readFile })).rejects.toThrow(InvalidStorePathError);
    await expect(loadDrvClosure([`/nix/store/${h('1')}-p1`], { readFile })).rejects.toThrow(/root derivation/);
    expect(stats.reads).toEqual([]);
  });

  it('reads real files from disk by default', async () => {
    const error = (await loadDrvClosure([drvPath('1')]).catch((e: unknown) => e)) as DrvNotFoundError;
    expect(error).toBeInstanceOf(DrvNotFoundError);
    expect(error.message).toContain('requested as a root');
  });
});
