import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { joinTwoWordOptions, splitTwoWords } from '../../src/cli/twoWordOptions.js';
import { parseInstallable } from '../../src/installable/parseInstallable.js';
import { storePathBehind } from '../../src/installable/storePathBehind.js';
import { checkWantedOutputs, rootsFromWanted, UnknownOutputError } from '../../src/installable/wantedRoots.js';
import { testDerivation } from './drvFixtures.js';

const DRV = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1.drv';

describe('parseInstallable', () => {
  it.each([
    ['.#hello', { kind: 'flake', flakeRef: '.', fragment: 'hello', outputs: undefined }],
    ['path:/src/app#packages.x86_64-linux.app', { kind: 'flake', flakeRef: 'path:/src/app', fragment: 'packages.x86_64-linux.app', outputs: undefined }],
    ['nixpkgs#hello', { kind: 'flake', flakeRef: 'nixpkgs', fragment: 'hello', outputs: undefined }],
    ['.#openssl^dev,out', { kind: 'flake', flakeRef: '.', fragment: 'openssl', outputs: { kind: 'names', names: ['dev', 'out'] } }],
    ['.#openssl^*', { kind: 'flake', flakeRef: '.', fragment: 'openssl', outputs: { kind: 'all' } }],
    ['path:/src/app', { kind: 'flake', flakeRef: 'path:/src/app', fragment: undefined, outputs: undefined }],
    ['github:NixOS/nixpkgs/nixos-24.05#hello', { kind: 'flake', flakeRef: 'github:NixOS/nixpkgs/nixos-24.05', fragment: 'hello', outputs: undefined }],
    ['.#', { kind: 'flake', flakeRef: '.', fragment: undefined, outputs: undefined }],
  ])('%s is a flake reference', (text, expected) => {
    expect(parseInstallable(text)).toEqual({ text, ...expected });
  });

  it.each([
    [DRV, { path: DRV, outputs: undefined }],
    [`${DRV}^out,dev`, { path: DRV, outputs: { kind: 'names', names: ['out', 'dev'] } }],
    [`${DRV}^*`, { path: DRV, outputs: { kind: 'all' } }],
    [`${DRV}!dev`, { path: DRV, outputs: { kind: 'names', names: ['dev'] } }],
    [`${DRV}^out,out`, { path: DRV, outputs: { kind: 'names', names: ['out'] } }],
    ['./result.drv^out', { path: './result.drv', outputs: { kind: 'names', names: ['out'] } }],
    ['default.nix', { path: 'default.nix', outputs: undefined }],
    ['.', { path: '.', outputs: undefined }],
    ['./weird!name.nix', { path: './weird!name.nix', outputs: undefined }],
    ['/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1', { path: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1', outputs: undefined }],
  ])('%s is a path', (text, expected) => {
    expect(parseInstallable(text)).toEqual({ kind: 'path', text, ...expected });
  });

  it('<nixpkgs> is a NIX_PATH lookup, evaluated like a file', () => {
    expect(parseInstallable('<nixpkgs>')).toEqual({ kind: 'lookupPath', text: '<nixpkgs>', path: '<nixpkgs>' });
  });

  it.each([
    ['', /it is empty/],
    ['#hello', /a flake reference goes before "#"/],
    [`${DRV}^`, /the output name "" is empty/],
    [`${DRV}^out,`, /the output name "" is empty/],
    [`${DRV}^o/ut`, /the output name "o\/ut" has the invalid character "\/"/],
    ['.#hello^a b', /the output name "a b" has the invalid character " "/],
  ])('%j is refused as bad input', (text, message) => {
    let error: unknown;
    try {
      parseInstallable(text);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ exitCode: 2 });
    expect((error as Error).message).toMatch(message);
  });
});

describe('storePathBehind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'offload-installable-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // A fake store in the temp dir: the rules are about path text and symlinks, not about Nix.
  const store = join(dir, 'store');
  mkdirSync(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello', 'bin'), { recursive: true });
  writeFileSync(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello.drv'), 'Derive(...)');
  // An output that is itself a symlink pointing out of the store: Nix stops at the store path.
  symlinkSync('/etc/hostname', join(store, '1123456789abcdfghijklmnpqrsvwxyz-link'));
  symlinkSync(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello.drv'), join(dir, 'result.drv'));
  symlinkSync(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello'), join(dir, 'result'));
  symlinkSync('result', join(dir, 'result-again'));
  symlinkSync(join(store, '1123456789abcdfghijklmnpqrsvwxyz-link'), join(dir, 'result-link'));
  writeFileSync(join(dir, 'default.nix'), '{}');
  const behind = (path: string) => storePathBehind(path, { storeDir: store, cwd: dir });

  it('follows symlinks into the store, relative ones and chains too', async () => {
    expect(await behind('result.drv')).toBe(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello.drv'));
    expect(await behind('./result')).toBe(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello'));
    expect(await behind('result-again')).toBe(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello'));
  });

  it('stops at the store path: a subpath names its store path, a symlink output is not followed out', async () => {
    expect(await behind(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello', 'bin'))).toBe(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello'));
    expect(await behind('result/bin')).toBe(join(store, '0123456789abcdfghijklmnpqrsvwxyz-hello'));
    expect(await behind('result-link')).toBe(join(store, '1123456789abcdfghijklmnpqrsvwxyz-link'));
  });

  it('a store path that does not exist is still a store path (reported where it is read)', async () => {
    expect(await behind(join(store, '2123456789abcdfghijklmnpqrsvwxyz-gone.drv'))).toBe(join(store, '2123456789abcdfghijklmnpqrsvwxyz-gone.drv'));
  });

  it('files outside the store, missing or not, are expressions', async () => {
    expect(await behind('default.nix')).toBeUndefined();
    expect(await behind('.')).toBeUndefined();
    expect(await behind('missing.nix')).toBeUndefined();
  });
});

describe('rootsFromWanted and checkWantedOutputs', () => {
  const A = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a.drv';
  const B = '/nix/store/1123456789abcdfghijklmnpqrsvwxyz-b.drv';

  it('keeps the order the user named things in, each root once, with the union of wanted outputs', () => {
    const { roots, rootOutputs } = rootsFromWanted([
      { drvPath: B, outputs: ['out'], from: 'b' },
      { drvPath: A, outputs: ['dev'], from: 'a.dev' },
      { drvPath: A, outputs: ['out', 'dev'], from: 'a^out,dev' },
    ]);
    expect(roots).toEqual([B, A]);
    expect(rootOutputs).toEqual(new Map([[B, ['out']], [A, ['dev', 'out']]]));
  });

  it('all outputs (a bare .drv, ^*) win over a selection of the same derivation', () => {
    const { roots, rootOutputs } = rootsFromWanted([
      { drvPath: A, outputs: ['dev'], from: 'a^dev' },
      { drvPath: A, outputs: 'all', from: 'a' },
    ]);
    expect(roots).toEqual([A]);
    expect(rootOutputs.has(A)).toBe(false);
  });

  it('an output the derivation lacks is bad input naming the ones it has', () => {
    const drv = testDerivation({ drvPath: A, name: 'a', outputs: { out: { path: '/nix/store/2123456789abcdfghijklmnpqrsvwxyz-a', hashAlgo: '', hash: '' } } });
    const set = { roots: [A], drvs: new Map([[A, drv]]) };
    expect(() => checkWantedOutputs(set, [{ drvPath: A, outputs: ['out'], from: 'a^out' }])).not.toThrow();
    expect(() => checkWantedOutputs(set, [{ drvPath: A, outputs: ['doc', 'out'], from: 'a^doc,out' }])).toThrow(
      new UnknownOutputError('a^doc,out', A, ['doc'], ['out']),
    );
    expect(new UnknownOutputError('a^doc', A, ['doc'], ['out']).message).toBe(`a^doc: the derivation ${A} has no output "doc" (its outputs: out).`);
    expect(new UnknownOutputError('a^doc', A, ['doc'], ['out']).exitCode).toBe(2);
  });
});

describe('joinTwoWordOptions', () => {
  it('joins nix-build’s --arg NAME EXPR, --argstr NAME VALUE and Nix’s --option NAME VALUE so commander keeps both words', () => {
    expect(joinTwoWordOptions(['node', 'offload', 'build', 'f.nix', '--arg', 'n', '{ a = 1; }', '--argstr', 's', 'x y', '--option', 'cores', '2', '-A', 'p'])).toEqual([
      'node', 'offload', 'build', 'f.nix', '--arg', 'n={ a = 1; }', '--argstr', 's=x y', '--option', 'cores=2', '-A', 'p',
    ]);
    // The name never holds "=", so the value may: it splits at the first one.
    expect(splitTwoWords('--arg', 'EXPR')('n=x == y')).toEqual(['n', 'x == y']);
  });
  it('leaves a word that is already NAME=VALUE, a short --arg for the option parser to refuse, and everything after --', () => {
    expect(joinTwoWordOptions(['build', '--option', 'cores=2', 'f.nix'])).toEqual(['build', '--option', 'cores=2', 'f.nix']);
    expect(joinTwoWordOptions(['build', '--arg', 'n'])).toEqual(['build', '--arg', 'n']);
    expect(() => splitTwoWords('--arg', 'EXPR')('n')).toThrow('--arg "n": expected --arg NAME EXPR.');
    expect(joinTwoWordOptions(['build', '--', '--arg', 'n', 'e'])).toEqual(['build', '--', '--arg', 'n', 'e']);
  });
});
