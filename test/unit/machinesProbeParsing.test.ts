import { describe, expect, it } from 'vitest';
import { parseDfStore, parseLoadavg } from '../../src/remote/builderMetrics.js';
import { parseNixVersion, parseShowConfigJson, parseShowConfigText } from '../../src/remote/nixConfigProbe.js';

/** Trimmed from `nix --extra-experimental-features nix-command show-config --json` of Nix 2.8.0 (descriptions cut). */
const NIX_28_JSON = JSON.stringify({
  'extra-platforms': {
    aliases: [],
    defaultValue: ['i686-linux', 'x86_64-v1-linux'],
    description: '\nPlatforms other than the native one',
    documentDefault: false,
    value: ['i686-linux', 'x86_64-v1-linux', 'x86_64-v2-linux', 'x86_64-v3-linux'],
  },
  'max-jobs': { aliases: ['build-max-jobs'], defaultValue: 1, description: '', documentDefault: true, value: 1 },
  system: { aliases: [], defaultValue: 'x86_64-linux', description: '', documentDefault: true, value: 'x86_64-linux' },
  'system-features': { aliases: [], defaultValue: ['benchmark'], description: '', documentDefault: false, value: ['benchmark', 'big-parallel', 'nixos-test'] },
});

/** From `nix show-config` of Nix 2.8.0: one `name = value` line per setting. */
const NIX_28_TEXT = [
  'accept-flake-config = false',
  'access-tokens = ',
  'extra-platforms = i686-linux x86_64-v1-linux x86_64-v2-linux x86_64-v3-linux',
  'sandbox-paths = ',
  'system = x86_64-linux',
  'system-features = benchmark big-parallel nixos-test',
  '',
].join('\n');

describe('parseNixVersion', () => {
  it('reads the version nix-store prints', () => {
    expect(parseNixVersion('nix-store (Nix) 2.8.0\n')).toBe('2.8.0');
    expect(parseNixVersion('nix-store (Nix) 2.18.1pre20231006_abcdef\n')).toBe('2.18.1pre20231006_abcdef');
    expect(parseNixVersion('nix-store (Lix, like Nix) 2.90.0\n')).toBe('2.90.0');
    expect(parseNixVersion('nix-store (Nix) 2.3\n')).toBe('2.3');
  });

  it('refuses output that is not nix-store --version', () => {
    expect(parseNixVersion('')).toBeUndefined();
    expect(parseNixVersion('Welcome to the builder!\n')).toBeUndefined();
    expect(parseNixVersion('nix-store (Nix)\n')).toBeUndefined();
  });
});

describe('nix show-config', () => {
  const expected = {
    system: 'x86_64-linux',
    extraPlatforms: ['i686-linux', 'x86_64-v1-linux', 'x86_64-v2-linux', 'x86_64-v3-linux'],
    systemFeatures: ['benchmark', 'big-parallel', 'nixos-test'],
  };

  it('reads the JSON of Nix 2.4+ (settings with a value field)', () => {
    expect(parseShowConfigJson(NIX_28_JSON)).toEqual({ ok: true, config: expected });
  });

  it('reads the flat JSON of Nix 2.3, lists as strings', () => {
    const flat = JSON.stringify({ system: 'aarch64-linux', 'extra-platforms': 'armv7l-linux', 'system-features': 'kvm  big-parallel' });
    expect(parseShowConfigJson(flat)).toEqual({
      ok: true,
      config: { system: 'aarch64-linux', extraPlatforms: ['armv7l-linux'], systemFeatures: ['kvm', 'big-parallel'] },
    });
  });

  it('reads the text form, empty lists included', () => {
    expect(parseShowConfigText(NIX_28_TEXT)).toEqual({ ok: true, config: expected });
    expect(parseShowConfigText('system = x86_64-linux\nextra-platforms = \nsystem-features = \n')).toEqual({
      ok: true,
      config: { system: 'x86_64-linux', extraPlatforms: [], systemFeatures: [] },
    });
  });

  it('says what is wrong with output it cannot use', () => {
    expect(parseShowConfigJson('error: experimental Nix feature')).toMatchObject({ ok: false, reason: expect.stringMatching(/no JSON/) });
    expect(parseShowConfigJson('[1,2]')).toEqual({ ok: false, reason: 'nix show-config --json printed no JSON object' });
    expect(parseShowConfigJson('{"max-jobs":{"value":1}}')).toEqual({ ok: false, reason: 'nix show-config --json has no "system" setting' });
    expect(parseShowConfigText('warning: something\n')).toEqual({ ok: false, reason: 'nix show-config has no "system" setting' });
  });

  it('a setting of the wrong type counts as missing rather than being guessed', () => {
    const odd = JSON.stringify({ system: { value: 'x86_64-linux' }, 'system-features': { value: [1, 2] } });
    expect(parseShowConfigJson(odd)).toEqual({ ok: true, config: { system: 'x86_64-linux', extraPlatforms: [], systemFeatures: [] } });
  });
});

describe('load', () => {
  it('reads /proc/loadavg', () => {
    expect(parseLoadavg('12.81 10.97 6.84 10/390 370\n')).toEqual({ one: 12.81, five: 10.97, fifteen: 6.84 });
    expect(parseLoadavg('0 0.00 1\n')).toEqual({ one: 0, five: 0, fifteen: 1 });
    expect(parseLoadavg('cat: /proc/loadavg: No such file or directory')).toBeUndefined();
    expect(parseLoadavg('')).toBeUndefined();
  });
});

describe('parseDfStore', () => {
  it('reads the POSIX df -Pk line', () => {
    const text = 'Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda         264212084 23513968  82876944      23% /\n';
    expect(parseDfStore(text)).toEqual({ filesystem: '/dev/vda', totalKiB: 264212084, availableKiB: 82876944, usedPercent: 23, mountPoint: '/' });
  });

  it('keeps spaces in filesystem and mount names', () => {
    const text = 'Filesystem 1024-blocks Used Available Capacity Mounted on\nmap auto home 100 40 60 40% /Volumes/Nix Store\n';
    expect(parseDfStore(text)).toMatchObject({ filesystem: 'map auto home', availableKiB: 60, mountPoint: '/Volumes/Nix Store' });
  });

  it('refuses anything else', () => {
    expect(parseDfStore('')).toBeUndefined();
    expect(parseDfStore('Filesystem 1024-blocks Used Available Capacity Mounted on\n')).toBeUndefined();
    expect(parseDfStore('/dev/vda 1 2 3 4% /\n/dev/vdb 1 2 3 4% /\n')).toBeUndefined();
    expect(parseDfStore('Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda lots 2 3 4% /\n')).toBeUndefined();
  });
});
