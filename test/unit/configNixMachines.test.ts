import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MachinesFileError } from '../../src/config/errors.js';
import type { MachineSpec } from '../../src/config/machineSpec.js';
import { formatNixMachine, parseNixMachines, type NixMachinesOptions } from '../../src/config/nixMachines.js';
import { readIfExists } from '../../src/config/readIfExists.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const hostKey = readFileSync(new URL('../../fixtures/machines/ruby_host_ed25519.pub', import.meta.url)).toString('base64');

const builders = (text: string, extra: Partial<NixMachinesOptions> = {}) =>
  parseNixMachines(text, {
    source: '--builders',
    sourceIsFile: false,
    localSystem: 'x86_64-linux',
    cwd: repoRoot,
    readFile: readIfExists,
    ...extra,
  });

const defaults = { supportedFeatures: [], mandatoryFeatures: [], maxJobs: 1, speedFactor: 1 };

function errorOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof MachinesFileError) return error.message;
    throw error;
  }
  throw new Error('expected a MachinesFileError');
}

describe('Nix machines format', () => {
  it('reads a machines file with comments, placeholders, ssh-ng, ports and nested @file includes', () => {
    const text = readFileSync(`${repoRoot}/fixtures/machines/nix-machines`, 'utf8');
    const parsed = builders(text, { source: 'fixtures/machines/nix-machines', sourceIsFile: true, localSystem: 'aarch64-linux' });
    expect(parsed.machines).toEqual([
      {
        hostName: 'ruby',
        sshUser: 'root',
        sshKey: '/root/.ssh/id_ed25519',
        systems: ['x86_64-linux', 'aarch64-linux'],
        supportedFeatures: ['kvm', 'big-parallel'],
        mandatoryFeatures: [],
        maxJobs: 2,
        speedFactor: 1,
        publicHostKey: hostKey,
      },
      { hostName: 'kana', systems: ['aarch64-linux'], ...defaults },
      {
        hostName: 'aquamarine',
        sshUser: 'builder',
        port: 2222,
        systems: ['riscv64-linux'],
        supportedFeatures: ['benchmark'],
        mandatoryFeatures: ['benchmark'],
        maxJobs: 3,
        speedFactor: 2,
      },
      { hostName: 'lapis', systems: ['aarch64-linux'], ...defaults },
      { hostName: 'onyx', systems: ['i686-linux'], ...defaults },
      { hostName: 'fe80::1', port: 22, systems: ['x86_64-linux'], ...defaults },
      { hostName: 'nested-host', systems: ['aarch64-linux'], ...defaults },
    ]);
    expect(parsed.warnings).toEqual([
      `fixtures/machines/nix-machines:8: included machines file ${repoRoot}fixtures/machines/nix-machines.d/does-not-exist does not exist; skipped, as Nix does`,
    ]);
  });

  it('splits --builders on ";" and newlines and drops empty entries and comments', () => {
    // As in Nix, ";" ends a comment: entries are split before comments are cut.
    const parsed = builders('ruby x86_64-linux - 4;; kana aarch64-linux #comment; lapis\n\n  ssh://onyx  # x');
    expect(parsed.machines.map((m) => [m.hostName, m.systems, m.maxJobs])).toEqual([
      ['ruby', ['x86_64-linux'], 4],
      ['kana', ['aarch64-linux'], 1],
      ['lapis', ['x86_64-linux'], 1],
      ['onyx', ['x86_64-linux'], 1],
    ]);
  });

  it('reads an @file include from --builders relative to the working directory', () => {
    const parsed = builders('@nix-machines.d/nested ; ruby', { cwd: `${repoRoot}fixtures/machines` });
    expect(parsed.machines.map((m) => m.hostName)).toEqual(['nested-host', 'ruby']);
  });

  it('treats empty list items and repeated features as Nix does', () => {
    const [machine] = builders('ruby x86_64-linux,,i686-linux - 0 0 kvm,kvm,,nixos-test').machines;
    expect(machine).toMatchObject({
      systems: ['x86_64-linux', 'i686-linux'],
      maxJobs: 0,
      speedFactor: 1,
      supportedFeatures: ['kvm', 'nixos-test'],
    });
    expect(builders('ruby - - - 2.5').machines[0]?.speedFactor).toBe(2.5);
  });

  it('warns about columns past the eighth, which Nix ignores', () => {
    expect(builders('ruby - - - - - - - extra').warnings).toEqual([
      '--builders entry 1: 1 column(s) after the public host key ignored, as Nix does',
    ]);
  });

  it.each([
    ['ruby x86_64-linux - two', `--builders entry 1: bad machine specification 'ruby x86_64-linux - two': column 4 (maxJobs) "two" is not a whole number`],
    ['ruby x86_64-linux - -1', `--builders entry 1: bad machine specification 'ruby x86_64-linux - -1': column 4 (maxJobs) "-1" is not a whole number`],
    ['ok; ruby - - 1 fast', `--builders entry 2: bad machine specification 'ruby - - 1 fast': column 5 (speedFactor) "fast" is not a number from 0.01 to 1000 (0 means 1)`],
    ['ruby - - 1 0.000001', `--builders entry 1: bad machine specification 'ruby - - 1 0.000001': column 5 (speedFactor) "0.000001" is not a number from 0.01 to 1000 (0 means 1)`],
    ['ruby - - 1 5000', `--builders entry 1: bad machine specification 'ruby - - 1 5000': column 5 (speedFactor) "5000" is not a number from 0.01 to 1000 (0 means 1)`],
    ['- x86_64-linux', `--builders entry 1: bad machine specification '- x86_64-linux': the first column must be the builder, e.g. ssh://root@builder`],
    ['ruby - - - - - - bm90IGEga2V5', `--builders entry 1: bad machine specification 'ruby - - - - - - bm90IGEga2V5': column 8 (public host key) must be base64 of a line like "ssh-ed25519 AAAA…": unknown key type "not"`],
    ['ruby - - - - - - %%%', `--builders entry 1: bad machine specification 'ruby - - - - - - %%%': column 8 (public host key) must be base64 of a line like "ssh-ed25519 AAAA…": not valid base64`],
    ['https://cache.example', `--builders entry 1: bad machine specification 'https://cache.example': store URI scheme "https://" is not supported; offload builds over ssh:// or ssh-ng://`],
    ['daemon', `--builders entry 1: bad machine specification 'daemon': "daemon" is a local store, not an SSH builder`],
    ['/nix/store', `--builders entry 1: bad machine specification '/nix/store': "/nix/store" is a local store, not an SSH builder`],
    ['ssh://ruby?compress=true', `--builders entry 1: bad machine specification 'ssh://ruby?compress=true': store URI parameters ("?compress=true") are not supported`],
    ['ssh://ruby:0', `--builders entry 1: bad machine specification 'ssh://ruby:0': bad port "0" in store URI`],
    ['ssh://ruby:ssh', `--builders entry 1: bad machine specification 'ssh://ruby:ssh': bad port "ssh" in store URI`],
    ['ssh://-oProxyCommand=x', `--builders entry 1: bad machine specification 'ssh://-oProxyCommand=x': bad host name "-oProxyCommand=x" in store URI`],
    ['ssh://@ruby', `--builders entry 1: bad machine specification 'ssh://@ruby': bad user name "" in store URI`],
    ['ruby; kana; ssh://root@ruby', `--builders entry 3: builder "ruby" is listed again (first at --builders entry 1); each machine needs its own host name (use an ssh_config alias to reach one host twice)`],
  ])('rejects %j with a one-line error naming source and entry', (text, message) => {
    expect(errorOf(() => builders(text))).toBe(message);
  });

  it('names the file and line of a bad entry, also inside an include', () => {
    expect(errorOf(() => builders('# c\nruby\n\nkana - - x', { source: '/etc/nix/machines', sourceIsFile: true }))).toBe(
      `/etc/nix/machines:4: bad machine specification 'kana - - x': column 4 (maxJobs) "x" is not a whole number`,
    );
    expect(errorOf(() => builders('@fixtures/machines/nix-machines.d/loop-a'))).toBe(
      `${repoRoot}fixtures/machines/nix-machines.d/loop-b:1: @fixtures/machines/nix-machines.d/loop-a includes itself (via ${repoRoot}fixtures/machines/nix-machines.d/loop-a -> ${repoRoot}fixtures/machines/nix-machines.d/loop-b -> ${repoRoot}fixtures/machines/nix-machines.d/loop-a)`,
    );
    expect(errorOf(() => builders('@fixtures/machines'))).toMatch(
      new RegExp(`^--builders entry 1: cannot read included machines file ${repoRoot}fixtures/machines: EISDIR`),
    );
  });

  it('refuses to print what the format cannot carry', () => {
    const machine: MachineSpec = { hostName: 'ruby', systems: ['x86_64-linux'], ...defaults, sshKey: '/keys/my key' };
    expect(errorOf(() => formatNixMachine(machine))).toBe(
      `machine ruby: field "sshKey" = "/keys/my key" cannot be written in Nix's machines format`,
    );
  });
});

const token = fc.stringMatching(/^[a-z0-9_][a-z0-9_.-]{0,11}$/);
const machineArb: fc.Arbitrary<MachineSpec> = fc
  .record(
    {
      hostName: fc.oneof(token, fc.ipV4(), fc.constantFrom('::1', 'fe80::1:2')),
      sshUser: token,
      sshKey: fc.stringMatching(/^[~/a-zA-Z0-9_.][/a-zA-Z0-9_.-]{0,20}$/),
      port: fc.integer({ min: 1, max: 65535 }),
      systems: fc.uniqueArray(fc.constantFrom('x86_64-linux', 'aarch64-linux', 'riscv64-linux', 'i686-linux'), { minLength: 1 }),
      supportedFeatures: fc.uniqueArray(token, { maxLength: 4 }),
      mandatoryFeatures: fc.uniqueArray(token, { maxLength: 3 }),
      maxJobs: fc.integer({ min: 0, max: 64 }),
      speedFactor: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 4000 }).map((n) => n / 8)),
      publicHostKey: fc.constant(hostKey),
    },
    { requiredKeys: ['hostName', 'systems', 'supportedFeatures', 'mandatoryFeatures', 'maxJobs', 'speedFactor'] },
  )
  .filter((m) => m.sshKey !== '-');

describe('Nix machines format round trip', () => {
  it('prints random valid machines and parses them back unchanged', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(machineArb, { selector: (m) => m.hostName, minLength: 1, maxLength: 5 }),
        fc.constantFrom('\n', ';', ' ; ', '\n# comment\n'),
        (machines, separator) => {
          const text = machines.map(formatNixMachine).join(separator);
          expect(builders(text).machines).toEqual(machines);
        },
      ),
    );
  });
});
