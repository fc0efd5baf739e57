import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDrv } from '../../src/drv/parseDrv.js';
import { DrvParseError } from '../../src/drv/errors.js';
import { InvalidStorePathError } from '../../src/storePath/storePath.js';

const FIXTURES = new URL('../../fixtures/drv/', import.meta.url);
const HASH = 'i3bv4i15h5f4h7x0msi82g7ah3bckkdj';

function fixture(name: string): string {
  return readFileSync(new URL(name, FIXTURES), 'utf8');
}

function parseFixture(name: string) {
  const base = name.replace(/^.*\//, '');
  return parseDrv(fixture(name), `/nix/store/${HASH}-${base}`, { file: `fixtures/drv/${name}` });
}

function parseError(name: string): DrvParseError {
  try {
    parseFixture(name);
  } catch (e) {
    expect(e).toBeInstanceOf(DrvParseError);
    return e as DrvParseError;
  }
  throw new Error(`${name} parsed without error`);
}

describe('parseDrv on hand-written fixtures', () => {
  it('decodes every escape Nix prints', () => {
    const drv = parseFixture('escapes.drv');
    expect(drv.env['multi']).toBe('line one\nline two\r\n\ttabbed');
    expect(drv.env['quote']).toBe('say "hi"');
    expect(drv.env['slashes']).toBe('a\\b\\\\c');
    expect(drv.env['unicode']).toBe('grüße ✓');
    expect(drv.args).toEqual(['-c', 'echo "quoted" back\\slash']);
    expect(drv.name).toBe('escapes');
    expect(drv.drvPath).toBe(`/nix/store/${HASH}-escapes.drv`);
    expect(drv.system).toBe('x86_64-linux');
    expect(drv.builder).toBe('/bin/sh');
    expect(drv.inputSrcs).toEqual(['/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-builder.sh']);
    expect(drv.isFixedOutput).toBe(false);
    expect(drv.isBuiltin).toBe(false);
    expect(drv.preferLocalBuild).toBe(false);
    expect(drv.allowSubstitutes).toBe(true);
    expect(drv.requiredSystemFeatures).toEqual([]);
    expect(drv.structuredAttrs).toBeUndefined();
  });

  it('treats any other escaped character as itself, as Nix does', () => {
    const text = `Derive([],[],[],"\\a\\$\\'","b",[],[])`;
    expect(parseDrv(text, `/nix/store/${HASH}-x.drv`).system).toBe("a$'");
  });

  it('reads several outputs, input output sets and the feature list', () => {
    const drv = parseFixture('multi-output.drv');
    expect(Object.keys(drv.outputs).sort()).toEqual(['dev', 'man', 'out']);
    expect(drv.outputs['dev']).toEqual({
      path: '/nix/store/4lmnzx45iy43kwjqn1xna7z3dj8grrz5-openssl-3.0.15-dev',
      hashAlgo: '',
      hash: '',
    });
    expect(drv.inputDrvs).toEqual({
      '/nix/store/1iyhcnwnp5f6fycmdy0yn57qcybvm5rx-zlib-1.3.1.drv': ['dev', 'out'],
      '/nix/store/yyk596mhya1dp91k5hpanfmfcgrfczn1-perl-5.40.0.drv': ['out'],
    });
    expect(drv.requiredSystemFeatures).toEqual(['big-parallel', 'kvm']);
    expect(drv.allowSubstitutes).toBe(false);
    expect(drv.isFixedOutput).toBe(false);
  });

  it('recognises a builtin:fetchurl fixed-output derivation', () => {
    const drv = parseFixture('fixed-output.drv');
    expect(drv.outputs['out']).toEqual({
      path: '/nix/store/r5aa819x9yn981068vcd1hdjglhs83nx-busybox',
      hashAlgo: 'r:sha256',
      hash: '42b4c49d04c133563fa95f6876af22ad9910483f6e38c6ecd90e4d802bca08d4',
    });
    expect(drv.isFixedOutput).toBe(true);
    expect(drv.isBuiltin).toBe(true);
    expect(drv.preferLocalBuild).toBe(true);
    expect(drv.system).toBe('builtin');
  });

  it('accepts the empty output path of a floating content-addressed derivation', () => {
    const drv = parseFixture('ca-floating.drv');
    expect(drv.outputs['out']).toEqual({ path: '', hashAlgo: 'r:sha256', hash: '' });
    expect(drv.isFixedOutput).toBe(false);
    // Nix only sends such derivations to builders that declare this feature.
    expect(drv.requiredSystemFeatures).toEqual(['ca-derivations']);
  });

  it('takes scheduling facts from structured attrs', () => {
    const drv = parseFixture('structured-attrs.drv');
    expect(drv.requiredSystemFeatures).toEqual(['big-parallel', 'kvm']);
    expect(drv.preferLocalBuild).toBe(true);
    expect(drv.allowSubstitutes).toBe(false);
    expect(drv.structuredAttrs?.['script']).toBe('echo "nested"\n');
    expect(drv.structuredAttrs?.['outputs']).toEqual(['out']);
  });

  it('is not fooled by __proto__ keys', () => {
    const text = `Derive([],[],[],"s","b",[],[("__proto__","x"),("constructor","y")])`;
    const drv = parseDrv(text, `/nix/store/${HASH}-x.drv`);
    expect(Object.getPrototypeOf(drv.env)).toBe(Object.prototype);
    expect(Object.keys(drv.env)).toEqual(['__proto__', 'constructor']);
    expect(drv.env['__proto__']).toBe('x');
  });

  it('sorts and de-duplicates sets as Nix holds them', () => {
    const a = `/nix/store/${HASH}-a`;
    const b = `/nix/store/l9r346p3d25vs4g5v37f3r3f28js97kb-b`;
    const text = `Derive([],[],["${b}","${a}","${b}"],"s","b",["z","a"],[])`;
    const drv = parseDrv(text, `/nix/store/${HASH}-x.drv`);
    expect(drv.inputSrcs).toEqual([a, b]);
    expect(drv.args).toEqual(['z', 'a']);
  });

  // Its speed is measured by npm run bench -- plan (parsing firefox's .drv texts); a loaded CI host breaks any bound here.
  it('reads a long string full of escapes', () => {
    const value = 'line\\n\\"'.repeat(100_000);
    const text = `Derive([],[],[],"s","b",[],[("script","${value}")])`;
    const drv = parseDrv(text, `/nix/store/${HASH}-x.drv`);
    expect(drv.env['script']).toBe('line\n"'.repeat(100_000));
  });

  it('allows a final newline that an editor added', () => {
    expect(() => parseDrv(`Derive([],[],[],"s","b",[],[])\n`, `/nix/store/${HASH}-x.drv`)).not.toThrow();
  });

  it('rejects a derivation path that is not a store path', () => {
    expect(() => parseDrv(fixture('escapes.drv'), '/tmp/escapes.drv')).toThrow(InvalidStorePathError);
  });

  it('uses a custom store directory for every path', () => {
    const text = fixture('escapes.drv').replaceAll('/nix/store/', '/gnu/store/');
    expect(parseDrv(text, `/gnu/store/${HASH}-x.drv`, { storeDir: '/gnu/store' }).inputSrcs).toEqual([
      '/gnu/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-builder.sh',
    ]);
    expect(() => parseDrv(text.replace('/gnu/store/6cp', '/nix/store/6cp'), `/gnu/store/${HASH}-x.drv`, {
      storeDir: '/gnu/store',
    })).toThrow(/input source store path in \/gnu\/store/);
  });
});

describe('parse errors say where and what was expected', () => {
  it("reports '(' after Derive at line 1 col 7", () => {
    const e = parseError('malformed/no-paren.drv');
    expect(e.message).toMatch(/^expected '\(' at line 1 col 7 \(byte 6\) in fixtures\/drv\/malformed\/no-paren\.drv/);
    expect([e.line, e.column, e.byteOffset, e.expected]).toEqual([1, 7, 6, "'('"]);
    expect(e.file).toBe('fixtures/drv/malformed/no-paren.drv');
    expect(e.exitCode).toBe(2);
  });

  it('reports text that is not a derivation at its start', () => {
    const e = parseError('malformed/not-a-derivation.drv');
    expect([e.line, e.column, e.expected]).toEqual([1, 1, "'Derive'"]);
  });

  it('reports an unterminated string at the end of the file', () => {
    const text = fixture('malformed/truncated.drv');
    const e = parseError('malformed/truncated.drv');
    expect(e.byteOffset).toBe(text.length);
    expect(e.message).toContain('found end of file');
    expect(e.expected).toContain('closing the string');
  });

  it('rejects a source path carrying shell syntax, pointing at the string', () => {
    const text = fixture('malformed/shell-injection.drv');
    const e = parseError('malformed/shell-injection.drv');
    expect(e.byteOffset).toBe(text.indexOf('"/nix/store/6cp'));
    expect(e.message).toContain('input source store path');
    expect(e.message).toContain('invalid character ";"');
  });

  it('rejects an output path whose hash is not Nix base32', () => {
    const text = fixture('malformed/bad-hash.drv');
    const e = parseError('malformed/bad-hash.drv');
    expect(e.byteOffset).toBe(text.indexOf('"/nix/store/'));
    expect(e.message).toContain('an output store path');
  });

  it('rejects an input derivation that is not a .drv', () => {
    const e = parseError('malformed/input-not-drv.drv');
    expect(e.message).toContain('does not end in .drv');
  });

  it('rejects a duplicate output name at the second occurrence', () => {
    const text = fixture('malformed/duplicate-output.drv');
    const e = parseError('malformed/duplicate-output.drv');
    expect(e.byteOffset).toBe(text.lastIndexOf('"out"'));
  });

  it('rejects anything after the closing parenthesis', () => {
    const text = fixture('malformed/trailing-garbage.drv');
    const e = parseError('malformed/trailing-garbage.drv');
    expect(e.byteOffset).toBe(text.lastIndexOf('Derive'));
    expect(e.expected).toBe('end of file after the derivation');
  });

  it('rejects structured attrs of the wrong type', () => {
    const e = parseError('malformed/bad-json.drv');
    expect(e.message).toContain('requiredSystemFeatures must be a list of strings');
  });

  it('rejects structured attrs that are not JSON', () => {
    const text = `Derive([],[],[],"s","b",[],[("__json","{not json")])`;
    expect(() => parseDrv(text, `/nix/store/${HASH}-x.drv`)).toThrow(/not valid JSON/);
  });

  it('counts lines across raw newlines inside strings', () => {
    const e = parseError('malformed/error-on-line-3.drv');
    expect([e.line, e.column, e.expected]).toEqual([3, 13, "','"]);
  });

  it('reports the byte offset in UTF-8, not in UTF-16 units', () => {
    const text = `Derive([],[],[],"ü✓😀",x`;
    let error: DrvParseError | undefined;
    try {
      parseDrv(text, `/nix/store/${HASH}-x.drv`);
    } catch (e) {
      error = e as DrvParseError;
    }
    expect(error?.byteOffset).toBe(Buffer.byteLength(text.slice(0, text.indexOf(',x') + 1)));
  });

  it('rejects an output name that cannot be part of a path', () => {
    const text = `Derive([("a b","","","")],[],[],"s","b",[],[])`;
    expect(() => parseDrv(text, `/nix/store/${HASH}-x.drv`)).toThrow(/output name \(this one has the invalid character " "\)/);
  });
});
