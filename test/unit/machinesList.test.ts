import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { machinesAction } from '../../src/cli/machinesCommand.js';
import type { Machine } from '../../src/config/machine.js';
import { expectedHostKey, knownHostsFilesFor, knownHostsNamesFor } from '../../src/remote/expectedHostKey.js';
import { parseKnownHosts } from '../../src/remote/knownHosts.js';
import { featuresCell, hostKeyCell } from '../../src/report/machinesReport.js';
import { ECDSA, ED25519, HASHED_KNOWN_HOSTS, pinOf } from './hostKeyFixtures.js';

const machine = (overrides: Partial<Machine> = {}): Machine => ({
  hostName: 'builder',
  address: '127.0.0.1',
  port: 2222,
  systems: ['x86_64-linux'],
  supportedFeatures: [],
  mandatoryFeatures: [],
  maxJobs: 1,
  speedFactor: 1,
  ...overrides,
});

describe('expectedHostKey', () => {
  it('a pinned key decides alone and shows its fingerprint', () => {
    const known = parseKnownHosts(`[127.0.0.1]:2222 ${ECDSA.line}\n`, 'kh');
    const key = expectedHostKey(machine({ publicHostKey: pinOf(ED25519.line) }), known, []);
    expect(key).toEqual({ source: 'pinned', fingerprints: [`ssh-ed25519 ${ED25519.fingerprint}`], from: ['publicHostKey'], acceptUnknown: false });
    expect(hostKeyCell(key)).toBe(`pinned ssh-ed25519 ${ED25519.fingerprint}`);
  });

  it('a pin that does not decode is reported, not ignored', () => {
    const key = expectedHostKey(machine({ publicHostKey: 'bm90IGEga2V5' }), [], []);
    expect(key.source).toBe('pinned');
    expect(key.problem).toMatch(/publicHostKey is/);
    expect(hostKeyCell(key)).toMatch(/^pinned, unusable: /);
  });

  it('finds keys in known_hosts under [address]:port, hashed too', () => {
    const known = parseKnownHosts(HASHED_KNOWN_HOSTS, '/kh');
    const key = expectedHostKey(machine(), known, ['/kh']);
    expect(key.source).toBe('known_hosts');
    expect(key.fingerprints).toEqual([`ssh-ed25519 ${ED25519.fingerprint}`]);
    expect(key.from).toEqual(['/kh:1']);
  });

  it('looks keys up under [HostName]:port, or under HostKeyAlias when set, never under the bare alias', () => {
    const known = parseKnownHosts(`builder ${ECDSA.line}\nother ${ED25519.line}\n`, '/kh');
    // A key recorded for the alias does not vouch for whatever address and port it points at.
    expect(expectedHostKey(machine(), known, ['/kh']).source).toBe('none');
    expect(knownHostsNamesFor(machine())).toEqual(['[127.0.0.1]:2222']);
    const aliased = machine({ hostKeyAlias: 'builder' });
    expect(knownHostsNamesFor(aliased)).toEqual(['builder']);
    expect(expectedHostKey(aliased, known, ['/kh']).fingerprints).toEqual([`ecdsa-sha2-nistp256 ${ECDSA.fingerprint}`]);
    expect(knownHostsNamesFor(machine({ port: 22 }))).toEqual(['127.0.0.1']);
  });

  it('nothing known: refused unless unknown keys are accepted', () => {
    expect(hostKeyCell(expectedHostKey(machine(), [], ['/kh']))).toMatch(/will be refused/);
    expect(hostKeyCell(expectedHostKey(machine({ acceptUnknownHostKey: true }), [], ['/kh']))).toMatch(/accepted/);
  });

  it('reads the user files (UserKnownHostsFile or the default) and always the global ones, none when pinned', () => {
    expect(knownHostsFilesFor(machine({ userKnownHostsFiles: ['/a'] }), ['/default'], ['/global'])).toEqual(['/a', '/global']);
    expect(knownHostsFilesFor(machine(), ['/default'], ['/global'])).toEqual(['/default', '/global']);
    expect(knownHostsFilesFor(machine({ globalKnownHostsFiles: ['/g2'] }), ['/default'], ['/global'])).toEqual(['/default', '/g2']);
    expect(knownHostsFilesFor(machine(), ['/default'])).toEqual(['/default', '/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']);
    expect(knownHostsFilesFor(machine({ publicHostKey: pinOf(ED25519.line) }), ['/default'])).toEqual([]);
  });
});

describe('featuresCell', () => {
  it('marks mandatory features and lists them even when not also supported', () => {
    expect(featuresCell(['kvm', 'big-parallel'], ['benchmark'])).toBe('kvm,big-parallel,benchmark*');
    expect(featuresCell([], [])).toBe('-');
  });
});

describe('offload machines', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'offload-machines-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  async function run(args: { machines: string; json?: boolean; hosts?: string[]; sshConfig?: string }) {
    let text = '';
    const code = await machinesAction({ color: false, sshConfig: join(root, 'ssh_config'), ...args }, { write: (t) => (text += t) });
    return { code, text };
  }

  it('lists Nix-format machines after ssh_config resolution and host selection, without connecting', async () => {
    const key = join(root, 'id');
    writeFileSync(key, 'not read');
    chmodSync(key, 0o600);
    const loose = join(root, 'loose');
    writeFileSync(loose, 'not read');
    chmodSync(loose, 0o644);
    writeFileSync(join(root, 'ssh_config'), 'Host alpha\n  HostName 192.0.2.7\n  Port 2200\n  User builder\n');
    const file = join(root, 'machines');
    writeFileSync(
      file,
      [
        `ssh://alpha x86_64-linux,aarch64-linux ${key} 4 2 kvm,big-parallel kvm ${pinOf(ED25519.line)}`,
        `ssh://root@beta x86_64-linux ${loose} 1 1 - - -`,
        'ssh://gamma x86_64-linux - 1 1',
      ].join('\n'),
    );

    const json = await run({ machines: file, json: true, hosts: ['alpha', 'beta'] });
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.text);
    expect(parsed.source).toBe(file);
    expect(parsed.machines.map((m: { hostName: string }) => m.hostName)).toEqual(['alpha', 'beta']);
    expect(parsed.machines[0]).toMatchObject({
      address: '192.0.2.7',
      port: 2200,
      user: 'builder',
      keyFile: key,
      systems: ['x86_64-linux', 'aarch64-linux'],
      supportedFeatures: ['kvm', 'big-parallel'],
      mandatoryFeatures: ['kvm'],
      maxJobs: 4,
      speedFactor: 2,
      hostKey: { source: 'pinned', fingerprints: [`ssh-ed25519 ${ED25519.fingerprint}`] },
    });
    expect(parsed.machines[0].keyFileProblem).toBeUndefined();
    expect(parsed.machines[1].keyFileProblem).toMatch(/accessible by group or others \(mode 0644\)/);
    expect(parsed.local.systems.length).toBeGreaterThan(0);
    expect(parsed.machines[0].origin).toBe(`${file}:1`);
    expect(parsed.local.origins).toMatchObject({ maxJobs: expect.any(String), supportedFeatures: expect.any(String) });

    const text = (await run({ machines: file })).text;
    expect(text).toContain(`Machines from ${file}`);
    expect(text).toMatch(/alpha\s+192\.0\.2\.7:2200\s+builder\s+x86_64-linux,aarch64-linux\s+kvm\*,big-parallel\s+4\s+2/);
    expect(text).toMatch(/gamma\s+gamma:22/);
    expect(text).toMatch(/\(local\)/);
    expect(text).toMatch(/^WHAT\s+FROM$/m);
    expect(text).toMatch(new RegExp(`alpha\\s+${file}:1`));
    expect(text).toMatch(/beta: SSH key .*loose.*\(mode 0644\)/);
  });
});
