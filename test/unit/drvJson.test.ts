import { describe, expect, it } from 'vitest';
import { readShowDerivationJson } from '../../src/drv/showDerivationJson.js';
import { loadJsonClosure } from '../../src/drv/loadClosure.js';
import { DrvJsonError } from '../../src/drv/errors.js';

const h = (c: string) => c.repeat(32);
const drv = (c: string, name: string) => `/nix/store/${h(c)}-${name}.drv`;
const out = (c: string, name: string) => `/nix/store/${h(c)}-${name}`;

function entry(name: string, outChar: string, inputs: Record<string, string[]> = {}, env: Record<string, string> = {}) {
  return {
    outputs: { out: { path: out(outChar, name) } },
    inputSrcs: [],
    inputDrvs: inputs,
    system: 'x86_64-linux',
    builder: '/bin/sh',
    args: ['-c', 'true'],
    env: { name, ...env },
  };
}

/** a ← b ← c, plus an unrelated d. */
function sample(): Record<string, unknown> {
  return {
    [drv('a', 'a')]: entry('a', '0'),
    [drv('b', 'b')]: entry('b', '1', { [drv('a', 'a')]: ['out'] }),
    [drv('c', 'c')]: entry('c', '2', { [drv('b', 'b')]: ['out'] }, { requiredSystemFeatures: 'big-parallel' }),
    [drv('d', 'd')]: entry('d', '3'),
  };
}

function jsonError(f: () => unknown): DrvJsonError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DrvJsonError);
    return e as DrvJsonError;
  }
  throw new Error('no error');
}

describe('readShowDerivationJson', () => {
  it('reads the Nix 2.8 show-derivation shape into derivations', () => {
    const text = JSON.stringify({
      [drv('f', 'src.tar.gz')]: {
        outputs: { out: { path: out('9', 'src.tar.gz'), hashAlgo: 'sha256', hash: 'ab'.repeat(32) } },
        inputSrcs: [out('8', 'b.sh'), out('7', 'a.sh')],
        inputDrvs: {},
        system: 'builtin',
        builder: 'builtin:fetchurl',
        args: [],
        env: { preferLocalBuild: '1', url: 'http://example.org/x' },
      },
      [drv('g', 'lib')]: {
        outputs: { out: { path: out('6', 'lib') }, dev: { path: out('5', 'lib-dev') }, ca: { hashAlgo: 'r:sha256' } },
        inputSrcs: [],
        inputDrvs: { [drv('f', 'src.tar.gz')]: ['out'], [drv('a', 'a')]: { outputs: ['out', 'dev'], dynamicOutputs: {} } },
        system: 'x86_64-linux',
        builder: '/bin/sh',
        args: [],
        env: { __json: JSON.stringify({ requiredSystemFeatures: ['kvm'], allowSubstitutes: false }) },
      },
    });
    const drvs = readShowDerivationJson(text, 'test.json');
    const fetch = drvs.get(drv('f', 'src.tar.gz'))!;
    expect(fetch.name).toBe('src.tar.gz');
    expect(fetch.isFixedOutput && fetch.isBuiltin && fetch.preferLocalBuild).toBe(true);
    expect(fetch.outputs['out']).toEqual({ path: out('9', 'src.tar.gz'), hashAlgo: 'sha256', hash: 'ab'.repeat(32) });
    expect(fetch.inputSrcs).toEqual([out('7', 'a.sh'), out('8', 'b.sh')]);
    const lib = drvs.get(drv('g', 'lib'))!;
    expect(lib.outputs['ca']).toEqual({ path: '', hashAlgo: 'r:sha256', hash: '' });
    expect(lib.inputDrvs[drv('a', 'a')]).toEqual(['dev', 'out']);
    expect(lib.requiredSystemFeatures).toEqual(['ca-derivations', 'kvm']);
    expect(lib.allowSubstitutes).toBe(false);
    expect(lib.structuredAttrs).toEqual({ requiredSystemFeatures: ['kvm'], allowSubstitutes: false });
  });

  it('names the source and key of a field with the wrong type', () => {
    const value = sample();
    (value[drv('b', 'b')] as { system: unknown }).system = 42;
    const e = jsonError(() => readShowDerivationJson(JSON.stringify(value), 'dag.json'));
    expect(e.message).toBe(`derivation JSON dag.json at "${drv('b', 'b')}".system: expected a string, found a number.`);
    expect(e.source).toBe('dag.json');
  });

  it('rejects invalid store paths anywhere', () => {
    const bad = sample();
    (bad[drv('c', 'c')] as { inputSrcs: string[] }).inputSrcs = ['/nix/store/x; rm -rf /'];
    expect(jsonError(() => readShowDerivationJson(JSON.stringify(bad), 's')).key).toBe(`"${drv('c', 'c')}".inputSrcs[0]`);

    const badKey = { '/nix/store/not-a-hash.drv': entry('x', '0') };
    expect(jsonError(() => readShowDerivationJson(JSON.stringify(badKey), 's')).message).toContain('not a valid store path');

    const badOut = sample();
    (badOut[drv('a', 'a')] as { outputs: unknown }).outputs = { out: { path: '/tmp/evil' } };
    expect(jsonError(() => readShowDerivationJson(JSON.stringify(badOut), 's')).key).toBe(`"${drv('a', 'a')}".outputs.out.path`);

    const badInput = sample();
    (badInput[drv('b', 'b')] as { inputDrvs: unknown }).inputDrvs = { [out('a', 'a')]: ['out'] };
    expect(jsonError(() => readShowDerivationJson(JSON.stringify(badInput), 's')).message).toContain('does not end in .drv');
  });

  it('rejects text that is not JSON or not an object', () => {
    expect(jsonError(() => readShowDerivationJson('{', 'x.json')).message).toMatch(/^derivation JSON x\.json: not valid JSON/);
    expect(jsonError(() => readShowDerivationJson('[]', 'x.json')).message).toContain('expected an object keyed by derivation path, found a list');
  });

  it('requires outputs', () => {
    const value = sample();
    delete (value[drv('a', 'a')] as { outputs?: unknown }).outputs;
    expect(jsonError(() => readShowDerivationJson(JSON.stringify(value), 's')).message).toContain('outputs: expected an object of outputs, found nothing');
  });
});

describe('loadJsonClosure', () => {
  it('defaults the roots to derivations nothing depends on', () => {
    const set = loadJsonClosure(JSON.stringify(sample()), 's');
    expect(set.roots).toEqual([drv('c', 'c'), drv('d', 'd')]);
    expect([...set.drvs.keys()]).toEqual([drv('a', 'a'), drv('b', 'b'), drv('c', 'c'), drv('d', 'd')]);
  });

  it('keeps only the closure of the given roots', () => {
    const set = loadJsonClosure(JSON.stringify(sample()), 's', [drv('b', 'b')]);
    expect(set.roots).toEqual([drv('b', 'b')]);
    expect([...set.drvs.keys()]).toEqual([drv('a', 'a'), drv('b', 'b')]);
  });

  it('names a requested root that the file does not have', () => {
    expect(jsonError(() => loadJsonClosure(JSON.stringify(sample()), 'dag.json', [drv('z', 'z')])).message).toContain(
      `the requested root ${drv('z', 'z')} is not in the file`,
    );
  });

  it('names an input derivation missing from the file and who needs it', () => {
    const value = sample();
    delete value[drv('a', 'a')];
    const e = jsonError(() => loadJsonClosure(JSON.stringify(value), 'dag.json'));
    expect(e.message).toBe(`derivation JSON dag.json at "${drv('b', 'b')}": its input derivation ${drv('a', 'a')} is not in the file.`);
  });
});

describe('show-derivation JSON: cycles and nesting', () => {
  it('refuses a cycle with no roots instead of planning nothing', () => {
    const value = {
      [drv('a', 'a')]: entry('a', '0', { [drv('b', 'b')]: ['out'] }),
      [drv('b', 'b')]: entry('b', '1', { [drv('a', 'a')]: ['out'] }),
    };
    const e = jsonError(() => loadJsonClosure(JSON.stringify(value), 'dag.json'));
    expect(e.message).toBe(
      `derivation JSON dag.json: derivations depend on each other in a cycle, so none of them can be built first: ${drv('a', 'a')} → ${drv('b', 'b')} → ${drv('a', 'a')}.`,
    );
  });

  it('refuses a cycle anywhere in the file, even outside the requested roots', () => {
    const value = {
      ...sample(),
      [drv('h', 'h')]: entry('h', '4', { [drv('j', 'j')]: ['out'] }),
      [drv('i', 'i')]: entry('i', '5', { [drv('h', 'h')]: ['out'], [drv('a', 'a')]: ['out'] }),
      [drv('j', 'j')]: entry('j', '6', { [drv('i', 'i')]: ['out'] }),
    };
    const e = jsonError(() => loadJsonClosure(JSON.stringify(value), 'dag.json', [drv('c', 'c')]));
    expect(e.message).toContain(`${drv('h', 'h')} → ${drv('j', 'j')} → ${drv('i', 'i')} → ${drv('h', 'h')}`);
  });

  it('refuses a derivation that is its own input', () => {
    const value = { [drv('a', 'a')]: entry('a', '0', { [drv('a', 'a')]: ['out'] }) };
    expect(jsonError(() => loadJsonClosure(JSON.stringify(value), 'dag.json')).message).toContain(`${drv('a', 'a')} → ${drv('a', 'a')}.`);
  });

  it('walks a chain of 30,000 derivations without overflowing the stack', () => {
    const n = 30_000;
    const nixBase32 = '0123456789abcdfghijklmnpqrsvwxyz';
    const path = (i: number) => `/nix/store/${[...i.toString(32).padStart(32, '0')].map((c) => nixBase32[parseInt(c, 32)]).join('')}-x.drv`;
    const value: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) value[path(i)] = { ...entry('x', '0', i > 0 ? { [path(i - 1)]: ['out'] } : {}), outputs: {} };
    value[path(0)] = { ...(value[path(0)] as object), inputDrvs: { [path(n - 1)]: ['out'] } };
    const e = jsonError(() => loadJsonClosure(JSON.stringify(value), 'dag.json'));
    expect(e.message).toContain('in a cycle');
  });

  it('refuses JSON nested deeper than 256 levels, and structured attrs likewise', () => {
    expect(jsonError(() => readShowDerivationJson(`{"x": ${'['.repeat(5000)}`, 'x.json')).message).toBe(
      'derivation JSON x.json: line 1 column 262: JSON nested deeper than 256 levels of arrays and objects.',
    );
    const value = { [drv('a', 'a')]: entry('a', '0', {}, { __json: `{"a": ${'['.repeat(300)}${']'.repeat(300)}}` }) };
    expect(jsonError(() => readShowDerivationJson(JSON.stringify(value), 's')).message).toContain(
      'the structured attrs in env.__json are nested deeper than 256 levels of arrays and objects',
    );
  });
});
