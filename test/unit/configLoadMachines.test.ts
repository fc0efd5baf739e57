import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostSelectionError, MachinesFileError } from '../../src/config/errors.js';
import { loadMachinesConfig, nixSystemOf, type LoadMachinesOptions } from '../../src/config/loadMachines.js';
import type { MachineDefaults } from '../../src/config/nixSettings/knownSettings.js';
import { ExitCode, OffloadError } from '../../src/errors/offloadError.js';

const example = fileURLToPath(new URL('../../machines.example.json', import.meta.url));

let root: string;
let home: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'offload-load-'));
  home = join(root, 'home');
  mkdirSync(home);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function file(path: string, text: string): string {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, text);
  return full;
}

/** Every default path points into the temp dir, so the machine's own files never leak in. */
const machineDefaults: MachineDefaults = { system: 'x86_64-linux', extraPlatforms: ['i686-linux'], systemFeatures: ['benchmark', 'big-parallel', 'nixos-test'], cpus: 8, source: 'test' };

/** Every default path points into the temp dir, so the machine's own files never leak in; Nix reads $root/etc/nix. */
const load = (options: LoadMachinesOptions = {}) =>
  loadMachinesConfig({
    homeDir: home,
    nixMachineDefaults: machineDefaults,
    systemSshConfigFile: join(root, 'etc/ssh/ssh_config'),
    cwd: root,
    ...options,
    env: { USER: 'me', NIX_CONF_DIR: join(root, 'etc/nix'), NIX_USER_CONF_FILES: '', ...options.env },
  });

const names = async (options: LoadMachinesOptions = {}) => (await load(options)).machines.map((m) => m.hostName);

describe('loadMachinesConfig: where machines come from', () => {
  it('reads the example cluster from --machines and resolves each machine', async () => {
    const config = await load({ machinesFile: example });
    expect(config.source).toBe(example);
    expect(config.warnings).toBeUndefined();
    expect(config.local).toMatchObject({
      maxJobs: 1,
      speedFactor: 1,
      systems: ['x86_64-linux', 'i686-linux'],
      supportedFeatures: [],
      buildersUseSubstitutes: false,
    });
    expect(config.machines.map((m) => m.origin)).toEqual([0, 1, 2].map((i) => `${example} machines[${i}]`));
    expect(config.machines.map((m) => [m.hostName, m.maxJobs])).toEqual([
      ['aquamarine', 3],
      ['ruby', 2],
      ['kana', 2],
    ]);
    expect(config.machines[1]).toEqual({
      hostName: 'ruby',
      origin: `${example} machines[1]`,
      address: 'ruby',
      port: 22,
      sshUser: 'root',
      sshKey: `${home}/.ssh/id_ed25519`,
      identityFiles: [`${home}/.ssh/id_ed25519`],
      systems: ['x86_64-linux', 'aarch64-linux', 'riscv64-linux'],
      supportedFeatures: ['benchmark', 'big-parallel', 'kvm'],
      mandatoryFeatures: [],
      maxJobs: 2,
      speedFactor: 1,
      acceptUnknownHostKey: false,
    });
  });

  it('reads --machines in Nix format when it is not JSON, and JSON when it parses as JSON', async () => {
    const nixFile = file('builders.txt', 'ssh://root@ruby:2222 aarch64-linux - 4\nkana');
    const config = await load({ machinesFile: nixFile });
    expect(config.source).toBe(nixFile);
    expect(config.machines.map((m) => [m.hostName, m.sshUser, m.port, m.systems, m.maxJobs])).toEqual([
      ['ruby', 'root', 2222, ['aarch64-linux'], 4],
      ['kana', undefined, 22, ['x86_64-linux'], 1],
    ]);
    expect(await names({ machinesFile: file('machines', '[{"hostName": "onyx", "systems": ["x86_64-linux"]}]') })).toEqual(['onyx']);
  });

  it('reports JSON errors for a .json file even when it looks like a Nix line', async () => {
    await expect(load({ machinesFile: file('m.json', 'ruby x86_64-linux') })).rejects.toThrow(
      new MachinesFileError([`${join(root, 'm.json')}:1:1: invalid JSON: unexpected "r"`]),
    );
  });

  it('fails when --machines or $OFFLOAD_MACHINES names a missing file', async () => {
    await expect(load({ machinesFile: join(root, 'nope.json') })).rejects.toThrow(
      `machines file ${join(root, 'nope.json')} (--machines) does not exist`,
    );
    await expect(load({ env: { OFFLOAD_MACHINES: join(root, 'gone') } })).rejects.toThrow(
      `machines file ${join(root, 'gone')} ($OFFLOAD_MACHINES) does not exist`,
    );
  });

  it('reads --builders with ";" and newlines', async () => {
    const config = await load({ builders: 'ruby x86_64-linux - 2; kana\n ssh-ng://aquamarine' });
    expect(config.source).toBe('--builders');
    expect(config.machines.map((m) => m.hostName)).toEqual(['ruby', 'kana', 'aquamarine']);
  });

  it('refuses --machines together with --builders', async () => {
    await expect(load({ machinesFile: example, builders: 'ruby' })).rejects.toThrow(
      new OffloadError('give either --machines or --builders, not both', ExitCode.badInput),
    );
  });

  it("looks at --machines, --builders, $OFFLOAD_MACHINES, ~/.config/offload/machines.json, Nix's builders (default @/etc/nix/machines) in that order", async () => {
    const envFile = file('env-machines', 'from-env');
    file('home/.config/offload/machines.json', '[{"hostName": "from-home", "systems": ["x86_64-linux"]}]');
    file('etc/nix/machines', 'from-etc');
    const env = { USER: 'me', OFFLOAD_MACHINES: envFile };
    expect(await names({ env, machinesFile: file('flag', 'from-flag') })).toEqual(['from-flag']);
    expect(await names({ env, builders: 'from-builders' })).toEqual(['from-builders']);
    expect(await names({ env })).toEqual(['from-env']);
    expect(await names()).toEqual(['from-home']);
    rmSync(join(home, '.config'), { recursive: true });
    expect(await load()).toMatchObject({
      source: `Nix's builders setting (default): @${join(root, 'etc/nix/machines')}`,
      machines: [{ hostName: 'from-etc', origin: `${join(root, 'etc/nix/machines')}:1` }],
    });
  });

  it('honours $XDG_CONFIG_HOME for the user machines file', async () => {
    file('xdg/offload/machines.json', '{"machines": [{"hostName": "xdg", "systems": ["x86_64-linux"]}]}');
    expect(await names({ env: { XDG_CONFIG_HOME: join(root, 'xdg') } })).toEqual(['xdg']);
  });

  it('builds locally only when nothing is configured, and says so', async () => {
    const config = await load();
    expect(config.machines).toEqual([]);
    expect(config.source).toBe(
      `no machines configured (no --machines, --builders or $OFFLOAD_MACHINES; no ${home}/.config/offload/machines.json; Nix's builders setting (default) "@${root}/etc/nix/machines" names no machine): building locally only`,
    );
    expect(config.local.maxJobs).toBe(1);
  });

  it('passes on warnings, such as a missing @include', async () => {
    const config = await load({ builders: '@missing; ruby' });
    expect(config.warnings).toEqual([
      `--builders entry 1: included machines file ${join(root, 'missing')} does not exist; skipped, as Nix does`,
    ]);
  });
});

describe('loadMachinesConfig: local settings', () => {
  const withLocal = () =>
    file(
      'local.json',
      JSON.stringify({
        machines: [],
        maxJobs: 0,
        buildersUseSubstitutes: true,
        local: { speedFactor: 2.5, systems: ['x86_64-linux', 'i686-linux'], supportedFeatures: ['kvm'] },
      }),
    );

  it('takes maxJobs, speedFactor, systems, features and buildersUseSubstitutes from the file', async () => {
    const path = withLocal();
    expect((await load({ machinesFile: path })).local).toEqual({
      maxJobs: 0,
      speedFactor: 2.5,
      systems: ['x86_64-linux', 'i686-linux'],
      supportedFeatures: ['kvm'],
      buildersUseSubstitutes: true,
      maxSilentTime: 0,
      buildTimeout: 0,
      store: expect.any(String),
      origins: {
        maxSilentTime: 'default',
        buildTimeout: 'default',
        maxJobs: `${path} (maxJobs)`,
        speedFactor: `${path} (local.speedFactor)`,
        systems: `${path} (local.systems)`,
        supportedFeatures: `${path} (local.supportedFeatures)`,
        buildersUseSubstitutes: `${path} (buildersUseSubstitutes)`,
      },
    });
  });

  it('lets the flags win over the file', async () => {
    const { local } = await load({ machinesFile: withLocal(), maxJobs: 4, buildersUseSubstitutes: false });
    expect(local).toMatchObject({ maxJobs: 4, buildersUseSubstitutes: false, origins: { maxJobs: '--max-jobs', buildersUseSubstitutes: '--builders-use-substitutes' } });
  });

  it("defaults to Nix's: one local job, the system, its extra-platforms and system-features", async () => {
    const aarch64 = { ...machineDefaults, system: 'aarch64-linux', extraPlatforms: [], systemFeatures: ['kvm', 'benchmark'] };
    expect((await load({ builders: 'ruby', nixMachineDefaults: aarch64 })).local).toEqual({
      maxJobs: 1,
      speedFactor: 1,
      systems: ['aarch64-linux'],
      supportedFeatures: ['benchmark', 'kvm'],
      buildersUseSubstitutes: false,
      maxSilentTime: 0,
      buildTimeout: 0,
      store: expect.any(String),
      origins: {
        maxSilentTime: 'default',
        buildTimeout: 'default',
        maxJobs: 'default',
        speedFactor: 'default',
        systems: 'system: default (test); extra-platforms: default (test)',
        supportedFeatures: 'default (test)',
        buildersUseSubstitutes: 'default',
      },
    });
    expect((await load({ builders: 'ruby', maxJobs: 0 })).local.maxJobs).toBe(0);
  });

  it('names Nix systems the way Nix does', () => {
    expect(nixSystemOf('x64', 'linux')).toBe('x86_64-linux');
    expect(nixSystemOf('arm64', 'linux')).toBe('aarch64-linux');
    expect(nixSystemOf('arm64', 'darwin')).toBe('aarch64-darwin');
    expect(nixSystemOf('riscv64', 'linux')).toBe('riscv64-linux');
  });
});

describe('loadMachinesConfig: --hosts and --exclude-hosts', () => {
  it('keeps only the named hosts, in file order', async () => {
    expect(await names({ machinesFile: example, hosts: ['kana', 'aquamarine'] })).toEqual(['aquamarine', 'kana']);
  });

  it('removes excluded hosts, also after --hosts', async () => {
    expect(await names({ machinesFile: example, excludeHosts: ['ruby'] })).toEqual(['aquamarine', 'kana']);
    expect(await names({ machinesFile: example, hosts: ['ruby', 'kana'], excludeHosts: ['kana'] })).toEqual(['ruby']);
  });

  it('lists the known hosts when a name is unknown', async () => {
    await expect(load({ machinesFile: example, hosts: ['ruby', 'rubyy'] })).rejects.toThrow(
      new HostSelectionError(`--hosts: no machine named "rubyy" in ${example} (known: aquamarine, ruby, kana)`),
    );
    await expect(load({ machinesFile: example, excludeHosts: ['onyx'] })).rejects.toThrow(
      new HostSelectionError(`--exclude-hosts: no machine named "onyx" in ${example} (known: aquamarine, ruby, kana)`),
    );
    await expect(load({ hosts: ['ruby'] })).rejects.toThrow(/^--hosts: no machine named "ruby" in no machines configured .* \(known: none\)$/);
  });
});

describe('loadMachinesConfig: ssh_config resolution', () => {
  const sshConfig = [
    'Host ruby',
    '  HostName 127.0.0.1',
    '  Port 2201',
    '  User cfg-user',
    '  IdentityFile ~/.ssh/ruby_key',
    '  StrictHostKeyChecking accept-new',
    '  UserKnownHostsFile ~/.ssh/cluster_hosts',
    'Host *',
    '  User everyone',
  ].join('\n');

  it('resolves an alias from ~/.ssh/config into address, port, user, key and host-key policy', async () => {
    file('home/.ssh/config', sshConfig);
    const [ruby, kana] = (await load({ builders: 'ruby; kana' })).machines;
    expect(ruby).toEqual({
      hostName: 'ruby',
      origin: '--builders entry 1',
      address: '127.0.0.1',
      port: 2201,
      sshUser: 'cfg-user',
      // An ssh_config IdentityFile is not the machines file's sshKey: ssh skips it when unusable.
      identityFiles: [`${home}/.ssh/ruby_key`],
      userKnownHostsFiles: [`${home}/.ssh/cluster_hosts`],
      systems: ['x86_64-linux'],
      supportedFeatures: [],
      mandatoryFeatures: [],
      maxJobs: 1,
      speedFactor: 1,
      acceptUnknownHostKey: true,
      strictHostKeyChecking: 'accept-new',
    });
    expect(kana).toMatchObject({ address: 'kana', port: 22, sshUser: 'everyone', acceptUnknownHostKey: false });
  });

  it('lets sshUser, sshKey and port from the machines file win over ssh_config', async () => {
    file('home/.ssh/config', sshConfig);
    const machinesFile = file(
      'm.json',
      JSON.stringify([{ hostName: 'ruby', systems: ['x86_64-linux'], sshUser: 'root', sshKey: '/keys/ruby', port: 22 }]),
    );
    const [ruby] = (await load({ machinesFile })).machines;
    expect(ruby).toMatchObject({
      address: '127.0.0.1',
      port: 22,
      sshUser: 'root',
      sshKey: '/keys/ruby',
      identityFiles: ['/keys/ruby', `${home}/.ssh/ruby_key`],
    });
  });

  it('uses the system ssh_config after the user file, and only --ssh-config when given', async () => {
    file('home/.ssh/config', 'Host ruby\n  Port 2201');
    file('etc/ssh/ssh_config', 'Host ruby\n  Port 2299\n  HostName 10.1.1.1');
    expect((await load({ builders: 'ruby' })).machines[0]).toMatchObject({ address: '10.1.1.1', port: 2201 });
    const only = file('only_config', 'Host ruby\n  HostName 10.2.2.2');
    expect((await load({ builders: 'ruby', sshConfigFile: only })).machines[0]).toMatchObject({ address: '10.2.2.2', port: 22 });
  });

  it('does not read ssh_config when there are no machines', async () => {
    file('home/.ssh/config', 'Host *\n  Port not-a-port');
    await expect(load()).resolves.toMatchObject({ machines: [] });
    await expect(load({ builders: 'ruby' })).rejects.toThrow(
      `${home}/.ssh/config: Port "not-a-port" for host ruby is not a number from 1 to 65535`,
    );
  });
});

describe("loadMachinesConfig: Nix's own settings when offload has none", () => {
  it('takes builders and max-jobs from nix.conf, each machine and setting saying where it came from', async () => {
    const conf = file('etc/nix/nix.conf', 'max-jobs = 0\nbuilders = ssh://root@ruby x86_64-linux - 2 ; kana aarch64-linux\nbuilders-use-substitutes = true\nextra-system-features = kvm\nbuild-max-silent-time = 30\n');
    const config = await load();
    expect(config.source).toBe(`Nix's builders setting (${conf}:2): ssh://root@ruby x86_64-linux - 2 ; kana aarch64-linux`);
    expect(config.machines.map((m) => [m.hostName, m.maxJobs, m.systems, m.origin])).toEqual([
      ['ruby', 2, ['x86_64-linux'], `Nix's builders setting (${conf}:2) entry 1`],
      ['kana', 1, ['aarch64-linux'], `Nix's builders setting (${conf}:2) entry 2`],
    ]);
    expect(config.local).toMatchObject({
      maxJobs: 0,
      buildersUseSubstitutes: true,
      supportedFeatures: ['benchmark', 'big-parallel', 'kvm', 'nixos-test'],
      maxSilentTime: 30,
      origins: {
        maxJobs: `${conf}:1`,
        buildersUseSubstitutes: `${conf}:3`,
        supportedFeatures: `default (test) + ${conf}:4 (extra-system-features)`,
        maxSilentTime: `${conf}:5 (build-max-silent-time)`,
      },
    });
    expect((await load({ maxSilentTime: 5, buildTimeout: 7 })).local).toMatchObject({ maxSilentTime: 5, buildTimeout: 7, origins: { maxSilentTime: '--max-silent-time', buildTimeout: '--timeout' } });
  });

  it('NIX_CONFIG wins over nix.conf: builders = @file, max-jobs = auto', async () => {
    file('etc/nix/nix.conf', 'max-jobs = 3\nbuilders = nowhere\n');
    const machines = file('work-machines', '# the team builders\nssh://ruby x86_64-linux,i686-linux\nssh://kana\n');
    const config = await load({ env: { NIX_CONFIG: `builders = @${machines}\nmax-jobs = auto` } });
    expect(config.machines.map((m) => [m.hostName, m.origin])).toEqual([
      ['ruby', `${machines}:2`],
      ['kana', `${machines}:3`],
    ]);
    expect(config.local).toMatchObject({ maxJobs: 8, origins: { maxJobs: 'NIX_CONFIG line 2' } });
  });

  it('reads the user nix.conf over the system one, and an empty builders means none', async () => {
    file('etc/nix/nix.conf', 'builders = ruby\n');
    const user = file('home/.config/nix/nix.conf', 'builders =\n');
    const config = await load({ env: { NIX_USER_CONF_FILES: undefined, HOME: home } });
    expect(config.machines).toEqual([]);
    expect(config.source).toBe(`no machines configured (no --machines, --builders or $OFFLOAD_MACHINES; no ${home}/.config/offload/machines.json; Nix's builders setting (${user}:1) is empty): building locally only`);
  });

  it("--builders, $OFFLOAD_MACHINES and offload's machines.json win over Nix's builders; --max-jobs over max-jobs", async () => {
    file('etc/nix/nix.conf', 'builders = from-nix\nmax-jobs = 5\n');
    expect(await names({ builders: 'from-flag' })).toEqual(['from-flag']);
    expect(await names({ env: { OFFLOAD_MACHINES: file('env-machines', 'from-env') } })).toEqual(['from-env']);
    file('home/.config/offload/machines.json', '[{"hostName": "from-home", "systems": ["x86_64-linux"]}]');
    expect(await names()).toEqual(['from-home']);
    const config = await load({ maxJobs: 2 });
    expect(config.local).toMatchObject({ maxJobs: 2, origins: { maxJobs: '--max-jobs' } });
    expect((await load()).local).toMatchObject({ maxJobs: 5 });
  });

  it('a builders line Nix cannot read is an error naming the setting', async () => {
    const conf = file('etc/nix/nix.conf', 'builders = ssh://ruby x86_64-linux - many\n');
    await expect(load()).rejects.toThrow(`Nix's builders setting (${conf}:1) entry 1: bad machine specification`);
  });
});

describe('loadMachinesConfig: machines known before Nix answers', () => {
  const hooked = (options: LoadMachinesOptions) => {
    const heard: string[][] = [];
    const loading = loadMachinesConfig(
      { homeDir: home, nixMachineDefaults: machineDefaults, systemSshConfigFile: join(root, 'etc/ssh/ssh_config'), cwd: root, ...options, env: { USER: 'me', NIX_CONF_DIR: join(root, 'etc/nix'), NIX_USER_CONF_FILES: '', ...options.env } },
      (machines) => heard.push(machines.map((m) => `${m.hostName}:${m.address}:${m.port}:${m.systems.join(',')}`)),
    );
    // Whatever was heard before the first await inside was known without Nix's configuration.
    const early = heard.map((list) => [...list]);
    return { loading, early, heard };
  };

  it('hands on --machines, --builders, $OFFLOAD_MACHINES and the user file at once, the local system filled in only later', async () => {
    file('etc/nix/nix.conf', 'builders = from-nix\n');
    const fromFlag = hooked({ machinesFile: file('m.json', '[{"hostName": "ruby", "port": 2222, "systems": ["aarch64-linux"]}]') });
    expect(fromFlag.early).toEqual([['ruby:ruby:2222:aarch64-linux']]);
    await fromFlag.loading;
    expect(fromFlag.heard).toHaveLength(1);
    const fromBuilders = hooked({ builders: 'ssh://kana - - 2; ruby x86_64-linux', hosts: ['kana'] });
    // kana names no systems: Nix's own, which only Nix can say.
    expect(fromBuilders.early).toEqual([['kana:kana:22:']]);
    expect((await fromBuilders.loading).machines.map((m) => m.systems)).toEqual([['x86_64-linux']]);
    expect(hooked({ env: { OFFLOAD_MACHINES: file('env-machines', 'from-env') } }).early).toEqual([['from-env:from-env:22:']]);
    file('home/.config/offload/machines.json', '[{"hostName": "from-home", "systems": ["x86_64-linux"]}]');
    expect(hooked({}).early).toEqual([['from-home:from-home:22:x86_64-linux']]);
  });

  it("hands on Nix's builders once Nix's configuration is read", async () => {
    file('etc/nix/nix.conf', 'builders = from-nix\n');
    const { loading, early, heard } = hooked({});
    expect(early).toEqual([]);
    await loading;
    expect(heard).toEqual([['from-nix:from-nix:22:x86_64-linux']]);
  });

  it('hands on nothing when the machines are bad input, and reports the error as before, after a bad nix.conf', async () => {
    const missing = hooked({ machinesFile: join(root, 'gone') });
    expect(missing.early).toEqual([]);
    await expect(missing.loading).rejects.toBeInstanceOf(MachinesFileError);
    expect(missing.heard).toEqual([]);
    const unknownHost = hooked({ builders: 'ruby', hosts: ['kana'] });
    await expect(unknownHost.loading).rejects.toBeInstanceOf(HostSelectionError);
    expect(unknownHost.heard).toEqual([]);
    // Nix's own error still comes first, as when the machines were read after it.
    const conf = file('etc/nix/nix.conf', 'max-jobs = many\n');
    await expect(hooked({ machinesFile: join(root, 'gone') }).loading).rejects.toThrow(conf);
  });
});
