import { describe, expect, it } from 'vitest';
import { NixConfError } from '../../src/config/errors.js';
import type { MachineDefaults } from '../../src/config/nixSettings/knownSettings.js';
import { applyNixConfig, describeOrigins, overrideSetting } from '../../src/config/nixSettings/nixConfig.js';
import { nixConfLocations, type NixConfLocations } from '../../src/config/nixSettings/nixConfLocations.js';
import { parseNixConf } from '../../src/config/nixSettings/nixConfSyntax.js';

const machine: MachineDefaults = { system: 'x86_64-linux', extraPlatforms: ['i686-linux'], systemFeatures: ['nixos-test', 'benchmark', 'big-parallel'], cpus: 6, source: 'test' };

/** Files in memory; a value of null stands for a file that exists but cannot be read. */
function reader(files: Record<string, string | null>) {
  return (path: string) => {
    const text = files[path];
    if (text === null) throw Object.assign(new Error('denied'), { code: 'EACCES' });
    return text;
  };
}

const at = (files: Record<string, string | null>, locations: Partial<NixConfLocations> = {}) =>
  applyNixConfig({ confDir: '/etc/nix', systemFile: '/etc/nix/nix.conf', userFiles: [], userFilesFrom: 'NIX_USER_CONF_FILES', ...locations }, reader(files), machine);

describe('Nix configuration syntax', () => {
  it('joins the words after "=" with single spaces, cuts comments anywhere, and allows an empty value', () => {
    const text = 'a =  x\t y # comment\n\n  # only a comment\nb =\r\nc = p#q\n';
    expect(parseNixConf(text, { kind: 'file', path: '/f' }, () => undefined).map(({ name, value, place }) => [name, value, place.line])).toEqual([
      ['a', 'x y', 1],
      ['b', '', 4],
      ['c', 'p', 5],
    ]);
  });

  it('refuses what Nix refuses: no spaces around "=", a lone word, an include with two paths', () => {
    for (const line of ['max-jobs=4', 'max-jobs', 'include a b', 'max-jobs : 4']) {
      expect(() => parseNixConf(line, { kind: 'file', path: '/f' }, () => undefined)).toThrow(NixConfError);
    }
  });

  it('includes relative to the including file; NIX_CONFIG may only include absolute paths', () => {
    const read = reader({ '/etc/nix/sub/x.conf': 'a = 1\n' });
    expect(parseNixConf('include sub/x.conf', { kind: 'file', path: '/etc/nix/nix.conf' }, read)[0]!.place).toEqual({ kind: 'file', path: '/etc/nix/sub/x.conf', line: 1 });
    expect(() => parseNixConf('include sub/x.conf', { kind: 'variable', variable: 'NIX_CONFIG' }, read)).toThrow(/must be an absolute path in NIX_CONFIG/);
    expect(parseNixConf('include /etc/nix/sub/x.conf', { kind: 'variable', variable: 'NIX_CONFIG' }, read)).toHaveLength(1);
  });

  it('a file that includes itself is an error naming the cycle (Nix would recurse until it crashes)', () => {
    const read = reader({ '/a.conf': 'include b.conf', '/b.conf': 'include a.conf' });
    expect(() => parseNixConf('include /a.conf', { kind: 'variable', variable: 'NIX_CONFIG' }, read)).toThrow('/a.conf -> /b.conf -> /a.conf');
  });
});

describe('where Nix reads its settings', () => {
  it('NIX_CONF_DIR, else /etc/nix; NIX_USER_CONF_FILES, else XDG dirs with ~/.config first', () => {
    expect(nixConfLocations({}, '/home/me')).toEqual({
      confDir: '/etc/nix',
      systemFile: '/etc/nix/nix.conf',
      userFiles: ['/home/me/.config/nix/nix.conf', '/etc/xdg/nix/nix.conf'],
      userFilesFrom: 'XDG_CONFIG_HOME/XDG_CONFIG_DIRS',
    });
    const set = nixConfLocations({ NIX_CONF_DIR: '/opt/nix//', NIX_USER_CONF_FILES: '/a::/b', NIX_CONFIG: '', NIX_REMOTE: 'daemon' }, '/home/me');
    expect(set).toMatchObject({ confDir: '/opt/nix', userFiles: ['/a', '/b'], nixConfig: '', nixRemote: 'daemon' });
    expect(nixConfLocations({ HOME: '/h', XDG_CONFIG_HOME: '/c', XDG_CONFIG_DIRS: '' }, '/ignored').userFiles).toEqual(['/c/nix/nix.conf']);
    expect(nixConfLocations({ NIX_USER_CONF_FILES: '' }, '/home/me').userFiles).toEqual([]);
  });

  it('an empty or relative NIX_CONF_DIR is refused (Nix aborts on it)', () => {
    expect(() => nixConfLocations({ NIX_CONF_DIR: '' }, '/h')).toThrow(NixConfError);
    expect(() => nixConfLocations({ NIX_CONF_DIR: 'etc' }, '/h')).toThrow(/absolute/);
  });
});

describe('applying the settings', () => {
  it('user files apply after nix.conf, the first listed last; NIX_CONFIG last of all', () => {
    const config = at(
      { '/etc/nix/nix.conf': 'max-jobs = 1\ntimeout = 5\nsubstituters = s1', '/u1': 'max-jobs = 2\nextra-substituters = s2', '/u2': 'max-jobs = 3\ntimeout = 6' },
      { userFiles: ['/u1', '/u2'], nixConfig: 'extra-substituters = s3' },
    );
    expect(config.settings.maxJobs.value).toBe(2);
    expect(config.settings.timeout.value).toBe(6);
    expect(config.settings.substituters.value).toEqual(['s1', 's2', 's3']);
    expect(describeOrigins(config.settings.substituters.origins)).toBe('/etc/nix/nix.conf:3 + /u1:2 (extra-substituters) + NIX_CONFIG line 1 (extra-substituters)');
    expect(config.filesRead).toEqual(['/etc/nix/nix.conf', '/u2', '/u1']);
  });

  it('defaults: builders and netrc-file under the conf dir, max-jobs 1, the machine-dependent ones from the machine', () => {
    const config = at({}, { confDir: '/opt/nix' });
    expect(config.settings.builders.value).toBe('@/opt/nix/machines');
    expect(config.settings.maxJobs).toEqual({ value: 1, origins: [{ kind: 'default' }] });
    expect(config.settings.systemFeatures.value).toEqual(['benchmark', 'big-parallel', 'nixos-test']);
    expect(describeOrigins(config.settings.system.origins)).toBe('default (test)');
    expect(config.settings.maxSubstitutionJobs.value).toBe(16);
  });

  it('max-jobs = auto is the number of CPUs; sets are sorted and unique; lists keep their order', () => {
    const config = at({ '/etc/nix/nix.conf': 'max-jobs = auto\nsystem-features = z a z\nextra-system-features = b\nsubstituters = z a' });
    expect(config.settings.maxJobs.value).toBe(6);
    expect(config.settings.systemFeatures.value).toEqual(['a', 'b', 'z']);
    expect(config.settings.substituters.value).toEqual(['z', 'a']);
  });

  it('an extra- form of a one-value setting is ignored with a warning, as Nix does; unknown settings are kept as text', () => {
    const config = at({ '/etc/nix/nix.conf': 'extra-builders = ssh://x\nsandbox = relaxed\nextra-sandbox-paths = /bin/sh' });
    expect(config.settings.builders.value).toBe('@/etc/nix/machines');
    expect(config.warnings).toEqual([expect.stringContaining("/etc/nix/nix.conf:1: unknown setting 'extra-builders' ignored")]);
    expect(config.other.get('sandbox')).toEqual({ value: 'relaxed', origins: [{ kind: 'file', path: '/etc/nix/nix.conf', line: 2, as: 'sandbox' }] });
  });

  it('a bad value is an error naming the place; an unreadable file (or include) drops that whole file, as Nix does', () => {
    expect(() => at({ '/etc/nix/nix.conf': '\nfallback = maybe' })).toThrow("/etc/nix/nix.conf:2: setting 'fallback' has invalid value 'maybe' (expected true or false)");
    const config = at({ '/etc/nix/nix.conf': 'max-jobs = 4\ninclude /locked', '/locked': null, '/u': 'timeout = 3' }, { userFiles: ['/u'] });
    expect(config.settings.maxJobs.value).toBe(1);
    expect(config.settings.timeout.value).toBe(3);
    expect(config.warnings).toEqual(['/etc/nix/nix.conf was skipped, as Nix skips it: /locked: EACCES']);
    expect(() => at({ '/etc/nix/nix.conf': 'include /missing' })).toThrow(/included file '\/missing' not found/);
    expect(at({ '/etc/nix/nix.conf': '!include /missing\nmax-jobs = 2' }).settings.maxJobs.value).toBe(2);
  });

  it('a command-line option overrides a setting and says so', () => {
    const config = overrideSetting(at({ '/etc/nix/nix.conf': 'max-jobs = 4' }), 'maxJobs', 0, '--max-jobs');
    expect(config.settings.maxJobs).toEqual({ value: 0, origins: [{ kind: 'flag', flag: '--max-jobs' }] });
  });
});
