import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { machineDefaultsKey, machineSources, readCachedDefaults, writeCachedDefaults, type KeySources } from '../../src/config/nixSettings/machineDefaultsCache.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'offload-defaults-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const defaults = { system: 'x86_64-linux', extraPlatforms: ['i686-linux'], systemFeatures: ['benchmark', 'big-parallel', 'kvm'] };

/** A `nix` that answers `show-config --json` as Nix 2.8 does for these defaults, and counts how often it was run. */
function fakeNix(dir: string, answer = defaults): { count: () => number } {
  mkdirSync(dir, { recursive: true });
  const counter = join(dir, 'runs');
  const json = JSON.stringify({
    system: { defaultValue: answer.system, value: answer.system },
    'extra-platforms': { defaultValue: answer.extraPlatforms, value: answer.extraPlatforms },
    'system-features': { defaultValue: answer.systemFeatures, value: answer.systemFeatures },
  });
  // Shell builtins only: PATH holds nothing but this folder.
  writeFileSync(join(dir, 'nix'), `#!/bin/sh\necho run >> '${counter}'\nprintf '%s\\n' '${json}'\n`);
  chmodSync(join(dir, 'nix'), 0o755);
  return { count: () => (existsSync(counter) ? readFileSync(counter, 'utf8').split('\n').filter(Boolean).length : 0) };
}

describe('machine defaults key', () => {
  it('names the nix on PATH by its real file, so two links to one binary are one key and a replaced binary another', () => {
    const bin = join(root, 'bin');
    fakeNix(bin);
    mkdirSync(join(root, 'a'));
    symlinkSync(join(bin, 'nix'), join(root, 'a', 'nix'));
    const viaBin = machineDefaultsKey({ PATH: bin });
    expect(viaBin).toBeDefined();
    expect(machineDefaultsKey({ PATH: join(root, 'a') })).toBe(viaBin);
    utimesSync(join(bin, 'nix'), new Date(), new Date(Date.now() + 60_000));
    expect(machineDefaultsKey({ PATH: bin })).not.toBe(viaBin);
  });

  it('takes the first executable nix along PATH, as execvp does, and has no key without one', () => {
    const first = join(root, 'first');
    const second = join(root, 'second');
    mkdirSync(first);
    writeFileSync(join(first, 'nix'), 'not executable');
    fakeNix(second);
    expect(machineDefaultsKey({ PATH: `relative:${first}:${second}` })).toBe(machineDefaultsKey({ PATH: second }));
    expect(machineDefaultsKey({ PATH: first })).toBeUndefined();
    expect(machineDefaultsKey({})).toBeUndefined();
  });

  it('changes with /dev/kvm being usable and with the CPU', () => {
    const sources = (kvm: boolean, cpu: string): KeySources => ({ nixBinary: () => '/nix/store/x-nix/bin/nix 1:2 3 4 5', kvmUsable: () => kvm, cpu: () => cpu });
    const base = machineDefaultsKey({}, sources(false, 'model fpu sse2'));
    expect(machineDefaultsKey({}, sources(true, 'model fpu sse2'))).not.toBe(base);
    expect(machineDefaultsKey({}, sources(false, 'model fpu sse2 avx2'))).not.toBe(base);
    expect(machineDefaultsKey({}, sources(false, 'model fpu sse2'))).toBe(base);
  });

  it('reads this machine', () => {
    expect(typeof machineSources.kvmUsable()).toBe('boolean');
    expect(machineSources.cpu().length).toBeGreaterThan(0);
  });
});

describe('kept machine defaults', () => {
  it('come back only under the key they were kept with', () => {
    const file = join(root, 'cache', 'offload', 'nix-machine-defaults.json');
    writeCachedDefaults(file, 'k1', { ...defaults, cpus: 8, source: 'nix show-config' } as typeof defaults);
    expect(readCachedDefaults(file, 'k1')).toEqual(defaults);
    expect(readCachedDefaults(file, 'k2')).toBeUndefined();
    // Only what Nix answered is kept: the CPU count is counted at every start.
    expect(JSON.parse(readFileSync(file, 'utf8')).defaults).toEqual(defaults);
    expect(readdirSync(join(root, 'cache', 'offload'))).toEqual(['nix-machine-defaults.json']);
  });

  it('are asked again when the file is missing, not JSON, or not the shape kept', () => {
    const file = join(root, 'kept.json');
    expect(readCachedDefaults(file, 'k')).toBeUndefined();
    writeFileSync(file, '{"key":"k","defaults":');
    expect(readCachedDefaults(file, 'k')).toBeUndefined();
    writeFileSync(file, JSON.stringify({ key: 'k', defaults: { ...defaults, systemFeatures: 'kvm' } }));
    expect(readCachedDefaults(file, 'k')).toBeUndefined();
    writeFileSync(file, JSON.stringify({ key: 'k', defaults: { ...defaults, system: 1 } }));
    expect(readCachedDefaults(file, 'k')).toBeUndefined();
  });

  it('that cannot be written leave nothing behind and fail nothing', () => {
    writeFileSync(join(root, 'file'), '');
    expect(() => writeCachedDefaults(join(root, 'file', 'offload', 'kept.json'), 'k', defaults)).not.toThrow();
    mkdirSync(join(root, 'dir'));
    // The rename fails onto a folder of that name: the partial file goes.
    mkdirSync(join(root, 'dir', 'kept.json'));
    writeCachedDefaults(join(root, 'dir', 'kept.json'), 'k', defaults);
    expect(readdirSync(join(root, 'dir'))).toEqual(['kept.json']);
  });
});

describe('machineDefaults with a cache file', () => {
  const savedPath = process.env.PATH;
  afterEach(() => {
    process.env.PATH = savedPath;
    vi.resetModules();
  });

  /** A fresh module each time: machineDefaults keeps its answer for the rest of the process. */
  async function freshStart(cacheFile: string) {
    vi.resetModules();
    const { machineDefaults } = await import('../../src/config/nixSettings/machineDefaults.js');
    return machineDefaults({ cacheFile });
  }

  it("asks Nix once, and later starts take its kept answer until another nix is on PATH", async () => {
    const file = join(root, 'kept.json');
    const nix = fakeNix(join(root, 'nix-a'));
    process.env.PATH = join(root, 'nix-a');
    const first = await freshStart(file);
    expect(first).toMatchObject({ ...defaults, source: 'nix show-config' });
    expect(nix.count()).toBe(1);
    const second = await freshStart(file);
    expect(second).toEqual(first);
    expect(nix.count()).toBe(1);

    const other = fakeNix(join(root, 'nix-b'), { ...defaults, systemFeatures: ['benchmark'] });
    process.env.PATH = join(root, 'nix-b');
    expect(await freshStart(file)).toMatchObject({ systemFeatures: ['benchmark'] });
    expect(other.count()).toBe(1);
  });

  it('never keeps what offload computed when Nix failed', async () => {
    const file = join(root, 'kept.json');
    mkdirSync(join(root, 'broken'));
    writeFileSync(join(root, 'broken', 'nix'), '#!/bin/sh\nexit 1\n');
    chmodSync(join(root, 'broken', 'nix'), 0o755);
    process.env.PATH = join(root, 'broken');
    expect((await freshStart(file)).source).toMatch(/^computed by offload/);
    expect(existsSync(file)).toBe(false);
  });
});
