import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MachinesFileError } from '../../src/config/errors.js';
import { parseMachinesJson } from '../../src/config/machinesJson.js';
import { decodePublicHostKey } from '../../src/config/publicHostKey.js';
import { ExitCode, OffloadError } from '../../src/errors/offloadError.js';

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/machines/${name}`, import.meta.url), 'utf8');
const hostKeyLine = fixture('ruby_host_ed25519.pub');
const hostKey = Buffer.from(hostKeyLine).toString('base64');

function errorOf(text: string, file = 'machines.json'): MachinesFileError {
  try {
    parseMachinesJson(text, file);
  } catch (error) {
    if (error instanceof MachinesFileError) return error;
    throw error;
  }
  throw new Error('expected a MachinesFileError');
}

const machines = (...list: unknown[]) => JSON.stringify({ machines: list });
const ok = { hostName: 'ruby', systems: ['x86_64-linux'] };

describe('JSON machines file: accepted shapes', () => {
  it('reads the array form and fills defaults', () => {
    expect(parseMachinesJson(fixture('array.json'), 'array.json')).toEqual({
      machines: [
        {
          hostName: 'ruby',
          sshUser: 'root',
          sshKey: '~/.ssh/id_ed25519',
          systems: ['x86_64-linux', 'aarch64-linux'],
          supportedFeatures: ['kvm', 'big-parallel'],
          mandatoryFeatures: [],
          maxJobs: 2,
          speedFactor: 1.5,
          port: 2222,
        },
        { hostName: 'kana', systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], maxJobs: 1, speedFactor: 1 },
      ],
    });
  });

  it('reads the object form with local settings', () => {
    expect(parseMachinesJson(fixture('object.json'), 'object.json')).toEqual({
      machines: [
        {
          hostName: 'aquamarine',
          systems: ['x86_64-linux'],
          supportedFeatures: [],
          mandatoryFeatures: ['benchmark'],
          maxJobs: 3,
          speedFactor: 1,
        },
      ],
      maxJobs: 0,
      buildersUseSubstitutes: true,
      local: { speedFactor: 2, systems: ['x86_64-linux', 'i686-linux'], supportedFeatures: ['kvm'] },
    });
  });

  it('accepts an object without machines as local-only', () => {
    expect(parseMachinesJson('{"maxJobs": 4}', 'm.json')).toEqual({ machines: [], maxJobs: 4 });
  });

  it('accepts a pinned host key that is base64 of a public key line', () => {
    const parsed = parseMachinesJson(machines({ ...ok, publicHostKey: hostKey }), 'm.json');
    expect(parsed.machines[0]?.publicHostKey).toBe(hostKey);
  });
});

describe('JSON machines file: every error is one line naming file, machine and field', () => {
  it.each([
    [[ok, { ...ok, hostName: 'kana', maxJobs: 'two' }], 'machines.json: machine 2 (kana): field "maxJobs": expected a positive integer, got "two"'],
    [[{ ...ok, maxJobs: 0 }], 'machines.json: machine 1 (ruby): field "maxJobs": expected a positive integer, got 0'],
    [[{ ...ok, maxJobs: 1.5 }], 'machines.json: machine 1 (ruby): field "maxJobs": expected a positive integer, got 1.5'],
    [[{ ...ok, speedFactor: 0 }], 'machines.json: machine 1 (ruby): field "speedFactor": expected a number from 0.01 to 1000, got 0'],
    [[{ ...ok, speedFactor: 5e-324 }], 'machines.json: machine 1 (ruby): field "speedFactor": expected a number from 0.01 to 1000, got 5e-324'],
    [[{ ...ok, speedFactor: 1001 }], 'machines.json: machine 1 (ruby): field "speedFactor": expected a number from 0.01 to 1000, got 1001'],
    [[{ systems: ['x86_64-linux'] }], 'machines.json: machine 1: field "hostName": is required'],
    [[{ ...ok, hostName: 'root@ruby' }], 'machines.json: machine 1 (root@ruby): field "hostName": expected a host name or ssh_config alias (no user@, spaces or leading "-"), got "root@ruby"'],
    [[{ ...ok, hostName: '-oProxyCommand=x' }], 'machines.json: machine 1 (-oProxyCommand=x): field "hostName": expected a host name or ssh_config alias (no user@, spaces or leading "-"), got "-oProxyCommand=x"'],
    [[{ hostName: 'ruby' }], 'machines.json: machine 1 (ruby): field "systems": is required'],
    [[{ ...ok, systems: [] }], 'machines.json: machine 1 (ruby): field "systems": expected a non-empty list of systems like "x86_64-linux", got []'],
    [[{ ...ok, systems: 'x86_64-linux' }], 'machines.json: machine 1 (ruby): field "systems": expected a non-empty list of systems like "x86_64-linux", got "x86_64-linux"'],
    [[{ ...ok, supportedFeatures: ['kvm', 'big parallel'] }], 'machines.json: machine 1 (ruby): field "supportedFeatures[1]": expected a feature name without spaces or commas, got "big parallel"'],
    [[{ ...ok, mandatoryFeatures: ['a,b'] }], 'machines.json: machine 1 (ruby): field "mandatoryFeatures[0]": expected a feature name without spaces or commas, got "a,b"'],
    [[{ ...ok, port: 70000 }], 'machines.json: machine 1 (ruby): field "port": expected a port number from 1 to 65535, got 70000'],
    [[{ ...ok, sshUser: 'ro ot' }], 'machines.json: machine 1 (ruby): field "sshUser": expected a user name (letters, digits, ".", "_", "-"), got "ro ot"'],
    [[{ ...ok, sshKey: 42 }], 'machines.json: machine 1 (ruby): field "sshKey": expected the path of a private key file, got 42'],
    [[{ ...ok, maxjobs: 2 }], 'machines.json: machine 1 (ruby): unknown field "maxjobs" (did you mean "maxJobs"?)'],
    [[{ ...ok, colour: 'red' }], 'machines.json: machine 1 (ruby): unknown field "colour" (known fields: hostName, sshUser, sshKey, systems, supportedFeatures, mandatoryFeatures, maxJobs, speedFactor, publicHostKey, port, pressure)'],
    [[{ ...ok, pressure: { storeFreeMiB: -1 } }], 'machines.json: machine 1 (ruby): field "pressure.storeFreeMiB": expected a size in MiB (a number ≥ 0), got -1'],
    [[ok, { ...ok }], 'machines.json: machine 2 (ruby): field "hostName": same host as machine 1; each machine needs its own hostName (use an ssh_config alias to reach one host twice)'],
  ])('array form %#', (list, message) => {
    const error = errorOf(JSON.stringify(list));
    expect(error.message).toBe(message);
    expect(error.message).not.toContain('\n');
  });

  it('uses the same machine numbering in the object form', () => {
    expect(errorOf(machines(ok, { hostName: 'ruby2', systems: ['x'], speedFactor: '2' })).message).toBe(
      'machines.json: machine 2 (ruby2): field "speedFactor": expected a number from 0.01 to 1000, got "2"',
    );
  });

  it('names top-level and local fields', () => {
    expect(errorOf('{"machines": [], "maxJobs": -1}').message).toBe(
      'machines.json: field "maxJobs": expected a whole number of local build slots (0 = never build locally), got -1',
    );
    expect(errorOf('{"local": {"speedFactor": "fast"}}').message).toBe(
      'machines.json: field "local.speedFactor": expected a number from 0.01 to 1000, got "fast"',
    );
    expect(errorOf('{"local": {"cores": 4}}').message).toBe(
      'machines.json: unknown field "local.cores" (known fields: speedFactor, systems, supportedFeatures)',
    );
    expect(errorOf('{"machines": {"hostName": "ruby"}}').message).toBe(
      'machines.json: field "machines": expected a list of machines, got {"hostName":"ruby"}',
    );
    expect(errorOf('{"Machines": []}').message).toBe('machines.json: unknown field "Machines" (did you mean "machines"?)');
    expect(errorOf('{"buildersUseSubstitutes": "yes"}').message).toBe(
      'machines.json: field "buildersUseSubstitutes": expected true or false, got "yes"',
    );
    expect(errorOf('"ruby"').message).toBe(
      'machines.json: expected a list of machines or an object with a "machines" field, got "ruby"',
    );
  });

  it('counts further problems and keeps them all', () => {
    const error = errorOf(JSON.stringify([{ hostName: 'ruby', maxJobs: 0 }, { hostName: 'kana', systems: [1] }]));
    expect(error.problems).toHaveLength(3);
    expect(error.message).toMatch(/\(and 2 more problems\)$/);
    expect(error.problems[2]).toBe('machines.json: machine 2 (kana): field "systems[0]": expected a system like "x86_64-linux", got 1');
  });

  it('rejects host keys that are not base64 of a known key line', () => {
    const key = (text: string) => Buffer.from(text).toString('base64');
    const cases: [string, string][] = [
      ['not base64!', 'not valid base64'],
      [key('ssh-ed25519'), 'does not decode to a "<type> <base64 key>" line'],
      [key('ssh-foo AAAA'), 'unknown key type "ssh-foo"'],
      [key('ssh-rsa ' + hostKeyLine.split(' ')[1]), 'the key data is not a ssh-rsa key'],
      [key('ssh-ed25519 ***'), 'the ssh-ed25519 key is not valid base64'],
    ];
    for (const [value, reason] of cases) {
      const message = errorOf(machines({ ...ok, publicHostKey: value })).message;
      expect(message).toContain('machines.json: machine 1 (ruby): field "publicHostKey": expected base64 of a public key line');
      expect(message).toContain(`(${reason})`);
    }
  });

  it('decodes a pinned host key to the blob the server presents', () => {
    const decoded = decodePublicHostKey(hostKey);
    expect(decoded).toEqual({
      ok: true,
      key: { type: 'ssh-ed25519', blob: Buffer.from(hostKeyLine.split(' ')[1]!, 'base64') },
    });
  });

  it('points at line and column of bad JSON', () => {
    expect(errorOf('{\n  "machines": [\n    {"hostName": "ruby",}\n  ]\n}').message).toBe(
      'machines.json:3:25: invalid JSON: trailing comma before "}"',
    );
    expect(errorOf('[\n  {"hostName": "ruby"}\n').message).toBe('machines.json:3:1: invalid JSON: expected "," or "]", unexpected end of file');
    expect(errorOf('[1,]').message).toBe('machines.json:1:4: invalid JSON: trailing comma before "]"');
    expect(errorOf('').message).toBe('machines.json:1:1: invalid JSON: unexpected end of file');
    expect(errorOf("[{'hostName': 1}]", 'x/m.json').message).toBe(
      'x/m.json:1:3: invalid JSON: expected a field name in double quotes, unexpected "\'"',
    );
  });

  it('is an OffloadError with the bad-input exit code', () => {
    const error = errorOf('[');
    expect(error).toBeInstanceOf(OffloadError);
    expect(error.exitCode).toBe(ExitCode.badInput);
  });
});

describe('JSON machines file: bounds', () => {
  it('refuses JSON nested 5,000 deep in one line naming where, instead of overflowing the stack', () => {
    const deep = `{"machines": ${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const error = errorOf(deep);
    expect(error.message).toBe('machines.json:1:269: JSON nested deeper than 256 levels of arrays and objects; a machines file needs 4');
    expect(error.exitCode).toBe(ExitCode.badInput);
    expect(errorOf('['.repeat(5000)).message).toMatch(/^machines\.json:1:257: JSON nested deeper than 256/);
  });

  it('does not count brackets inside strings', () => {
    const file = parseMachinesJson(JSON.stringify([{ ...ok, sshKey: `/k/${'['.repeat(300)}` }]), 'machines.json');
    expect(file.machines[0]?.sshKey).toBe(`/k/${'['.repeat(300)}`);
  });

  it('accepts speedFactor at both ends of its range', () => {
    const file = parseMachinesJson(machines({ ...ok, speedFactor: 0.01 }, { ...ok, hostName: 'kana', speedFactor: 1000 }), 'machines.json');
    expect(file.machines.map((m) => m.speedFactor)).toEqual([0.01, 1000]);
  });
});
