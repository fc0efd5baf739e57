import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NixConfError } from '../../src/config/errors.js';
import { KNOWN_SETTINGS, type SettingKey } from '../../src/config/nixSettings/knownSettings.js';
import { describeOrigins, readNixConfig } from '../../src/config/nixSettings/nixConfig.js';

/**
 * offload reads nix.conf itself (for provenance); the installed Nix is the
 * judge of what the files mean. Each case writes a configuration into a temp
 * dir, asks `nix show-config --json` under that environment, and compares
 * every setting offload knows with Nix's own value.
 */
const run = promisify(execFile);
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'offload-nixconf-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function write(path: string, text: string): string {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, text);
  return full;
}

/** An environment that reaches none of the machine's or the developer's settings. */
function envFor(name: string, variables: Record<string, string>): NodeJS.ProcessEnv {
  const { NIX_CONF_DIR: _a, NIX_USER_CONF_FILES: _b, NIX_CONFIG: _c, XDG_CONFIG_HOME: _d, XDG_CONFIG_DIRS: _e, ...base } = process.env;
  return { ...base, HOME: join(root, name, 'home'), XDG_CONFIG_DIRS: join(root, name, 'xdg'), NIX_CONF_DIR: join(root, name, 'etc'), ...variables };
}

async function nixShowConfig(env: NodeJS.ProcessEnv): Promise<Record<string, { value: unknown }>> {
  const { stdout } = await run('nix', ['--extra-experimental-features', 'nix-command', 'show-config', '--json'], { env, maxBuffer: 16 << 20 });
  return JSON.parse(stdout) as Record<string, { value: unknown }>;
}

/** Nix 2.8 does not know max-substitution-jobs (later Nix does); everything else must agree. */
const comparable = (Object.keys(KNOWN_SETTINGS) as SettingKey[]).filter((key) => key !== 'maxSubstitutionJobs');

async function expectSameAsNix(env: NodeJS.ProcessEnv) {
  const [nix, ours] = await Promise.all([nixShowConfig(env), readNixConfig({ env, homeDir: env.HOME! })]);
  for (const key of comparable) {
    const name = KNOWN_SETTINGS[key].name;
    expect({ name, value: ours.settings[key].value }).toEqual({ name, value: nix[name]!.value });
  }
  return ours;
}

describe("Nix settings: offload's reading equals `nix show-config`", () => {
  it('nothing configured: Nix defaults, incl. the machine-dependent system, extra-platforms and system-features', async () => {
    const ours = await expectSameAsNix(envFor('empty', { NIX_USER_CONF_FILES: '' }));
    expect(describeOrigins(ours.settings.maxJobs.origins)).toBe('default');
    expect(ours.settings.builders.value).toBe(`@${join(root, 'empty', 'etc')}/machines`);
    expect(describeOrigins(ours.settings.systemFeatures.origins)).toBe('default (nix show-config)');
  });

  it('nix.conf with aliases, comments, include, a missing !include, extra- and max-jobs = auto', async () => {
    write('files/etc/nix.conf', [
      '# the machine-wide file',
      'build-max-jobs = auto   # an alias, and auto',
      'builders = @/etc/nix/machines-work',
      'include sub/more.conf',
      '!include does-not-exist.conf',
      'substituters = https://a.example/ https://b.example/',
      'extra-substituters = https://c.example/',
      'binary-cache-public-keys = a:AAAA b:BBBB',
      'system-features = kvm big-parallel',
      'extra-system-features = benchmark',
      'max-silent-time = 30',
      'build-timeout = 600',
      'fallback = yes',
      'connect-timeout = 5',
      'builders-use-substitutes = true',
    ].join('\n'));
    write('files/etc/sub/more.conf', 'extra-platforms = aarch64-linux\r\nextra-trusted-public-keys = c:CCCC\n');
    const ours = await expectSameAsNix(envFor('files', { NIX_USER_CONF_FILES: '' }));
    const etc = join(root, 'files', 'etc');
    expect(describeOrigins(ours.settings.substituters.origins)).toBe(`${etc}/nix.conf:6 + ${etc}/nix.conf:7 (extra-substituters)`);
    expect(describeOrigins(ours.settings.maxJobs.origins)).toBe(`${etc}/nix.conf:2 (build-max-jobs)`);
    expect(ours.settings.extraPlatforms).toEqual({ value: ['aarch64-linux'], origins: [{ kind: 'file', path: `${etc}/sub/more.conf`, line: 1, as: 'extra-platforms' }] });
    // The include (line 4) is applied where it stands: line 8 then replaces what it added.
    expect(ours.settings.trustedPublicKeys.value).toEqual(['a:AAAA', 'b:BBBB']);
    expect(describeOrigins(ours.settings.trustedPublicKeys.origins)).toBe(`${etc}/nix.conf:8 (binary-cache-public-keys)`);
    expect(ours.filesRead).toEqual([`${etc}/nix.conf`, `${etc}/sub/more.conf`]);
  });

  it('NIX_USER_CONF_FILES: the first file listed wins, extra- adds across files', async () => {
    write('user/etc/nix.conf', 'max-jobs = 3\nsystem-features = a\n');
    const first = write('user/one.conf', 'max-jobs = 5\nextra-system-features = one\n');
    const second = write('user/two.conf', 'max-jobs = 7\nextra-system-features = two\ntimeout = 9\n');
    const ours = await expectSameAsNix(envFor('user', { NIX_USER_CONF_FILES: `${first}:${second}` }));
    expect(ours.settings.maxJobs).toMatchObject({ value: 5 });
    expect(describeOrigins(ours.settings.timeout.origins)).toBe(`${second}:3`);
  });

  it('XDG: ~/.config/nix/nix.conf over $XDG_CONFIG_DIRS/nix/nix.conf over nix.conf', async () => {
    write('xdg/etc/nix.conf', 'max-jobs = 2\ncores = 3\nkeep-going = true\n');
    write('xdg/xdg/nix/nix.conf', 'max-jobs = 4\ncores = 5\n');
    const home = write('xdg/home/.config/nix/nix.conf', 'max-jobs = 6\n');
    const ours = await expectSameAsNix(envFor('xdg', {}));
    expect(describeOrigins(ours.settings.maxJobs.origins)).toBe(`${home}:1`);
    expect(describeOrigins(ours.settings.cores.origins)).toBe(`${join(root, 'xdg/xdg/nix/nix.conf')}:2`);
    const custom = write('xdg/custom-home/nix/nix.conf', 'max-jobs = 8\n');
    await expectSameAsNix(envFor('xdg', { XDG_CONFIG_HOME: dirname(dirname(custom)) }));
  });

  it('NIX_CONFIG wins over every file, and may include an absolute path', async () => {
    write('env/etc/nix.conf', 'max-jobs = 2\nbuilders = ssh://a x86_64-linux\n');
    const included = write('env/extra.conf', 'extra-substituters = https://d.example/\n');
    const ours = await expectSameAsNix(
      envFor('env', { NIX_USER_CONF_FILES: '', NIX_CONFIG: `max-jobs = 0\nbuilders =\ninclude ${included}\nextra-extra-platforms = riscv64-linux` }),
    );
    expect(ours.settings.builders).toEqual({ value: '', origins: [{ kind: 'variable', variable: 'NIX_CONFIG', line: 2, as: 'builders' }] });
    expect(describeOrigins(ours.settings.maxJobs.origins)).toBe('NIX_CONFIG line 1');
  });

  it('a line Nix refuses is refused by both, naming the file and line', async () => {
    const file = write('bad/etc/nix.conf', 'max-jobs = 1\nmax-jobs=4\n');
    const env = envFor('bad', { NIX_USER_CONF_FILES: '' });
    await expect(nixShowConfig(env)).rejects.toThrow(/illegal configuration line/);
    await expect(readNixConfig({ env, homeDir: env.HOME! })).rejects.toThrow(new NixConfError(`${file}:2: illegal configuration line 'max-jobs=4' (Nix expects "name = value", with spaces around "=")`));
    const badValue = envFor('bad', { NIX_USER_CONF_FILES: '', NIX_CONF_DIR: join(root, 'nowhere'), NIX_CONFIG: 'max-jobs = many' });
    await expect(nixShowConfig(badValue)).rejects.toThrow(/max-jobs/);
    await expect(readNixConfig({ env: badValue, homeDir: env.HOME! })).rejects.toThrow(/NIX_CONFIG line 1: setting 'max-jobs' has invalid value 'many'/);
    const missing = envFor('bad', { NIX_USER_CONF_FILES: '', NIX_CONF_DIR: join(root, 'nowhere'), NIX_CONFIG: `include ${join(root, 'absent.conf')}` });
    await expect(nixShowConfig(missing)).rejects.toThrow(/not found/);
    await expect(readNixConfig({ env: missing, homeDir: env.HOME! })).rejects.toThrow(/not found/);
  });
});
