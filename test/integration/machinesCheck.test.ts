import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { machinesCheckAction, type MachinesCheckOptions } from '../../src/cli/machinesCommand.js';
import { ExitCode } from '../../src/errors/offloadError.js';
import { sha256Fingerprint } from '../../src/remote/hostKey.js';
import { PRESSURE_COMMAND } from '../../src/remote/builderPressure.js';
import { parseNixVersion } from '../../src/remote/nixConfigProbe.js';
import { SshPool } from '../../src/remote/sshPool.js';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';

interface CheckedMachine {
  hostName: string;
  verdict: 'ok' | 'warning' | 'unusable';
  reason: string | null;
  reachable: boolean | null;
  connectMs: number | null;
  authenticated: boolean;
  hostKey: { status: string; fingerprints: string[] };
  nixVersion: string | null;
  serveProtocol: string | null;
  nix: { system: string; extraPlatforms: string[]; systemFeatures: string[] } | null;
  load: { perCpu: number; cpus: number } | null;
  store: { filesystem: string; mountPoint: string; totalKiB: number; availableKiB: number; usedPercent: number } | null;
  findings: Array<{ severity: string; message: string }>;
}

describe.runIf(integrationPrereqs())('offload machines check against the test cluster', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let localNixVersion: string | undefined;

  beforeAll(async () => {
    cluster = await startTempCluster('machines-check');
    const { stdout } = await promisify(execFile)('nix-store', ['--version']);
    localNixVersion = parseNixVersion(stdout);
  });
  afterEach(async () => {
    for (const b of cluster.builders) {
      cluster.resume(b.name);
      await cluster.startSshd(b.name);
    }
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  /** A machines file: the cluster's own, with some machines' fields changed. */
  function machinesFile(name: string, change: Record<string, Record<string, unknown>> = {}): string {
    const machines = JSON.parse(readFileSync(cluster.machinesFile, 'utf8')) as Array<{ hostName: string }>;
    const path = join(cluster.dir, name);
    writeFileSync(path, JSON.stringify(machines.map((m) => ({ ...m, ...change[m.hostName] }))));
    return path;
  }

  async function check(options: Partial<MachinesCheckOptions> = {}) {
    let text = '';
    const code = await machinesCheckAction(
      { color: false, json: true, machines: cluster.machinesFile, sshConfig: cluster.sshConfigFile, timeout: 15_000, ...options },
      { write: (t) => (text += t) },
    );
    if (options.json === false) return { code, text, byHost: new Map<string, CheckedMachine>() };
    const machines = (JSON.parse(text) as { machines: CheckedMachine[] }).machines;
    return { code, text, byHost: new Map(machines.map((m) => [m.hostName, m])) };
  }

  const realFingerprint = (name: string) => {
    const [type, base64] = cluster.builder(name).hostKeyLine.split(' ');
    return `${type} ${sha256Fingerprint(Buffer.from(base64!, 'base64'))}`;
  };

  it('all three builders are ok, with their real Nix, serve protocol, systems and features', async () => {
    const exec = vi.spyOn(SshPool.prototype, 'exec');
    const { code, byHost } = await check();
    const commands = exec.mock.calls.map(([, command]) => command);
    exec.mockRestore();
    expect(code).toBe(ExitCode.ok);
    // Load, pressure and store space come from one remote command per builder: no `cat /proc/loadavg`, `nproc` or `df` of their own.
    expect(commands.filter((command) => command === PRESSURE_COMMAND)).toHaveLength(3);
    expect(commands.filter((command) => command !== PRESSURE_COMMAND && /\b(nproc|loadavg|df)\b/.test(command))).toEqual([]);
    expect([...byHost.keys()]).toEqual(['aquamarine', 'ruby', 'kana']);
    for (const m of byHost.values()) {
      expect(m.verdict, `${m.hostName}: ${m.reason}`).toBe('ok');
      expect(m).toMatchObject({ reachable: true, authenticated: true, nixVersion: localNixVersion });
      expect(m.hostKey).toEqual({ status: 'pinned', fingerprints: [realFingerprint(m.hostName)] });
      expect(m.serveProtocol).toMatch(/^2\.\d+$/);
      expect(m.connectMs).toBeGreaterThan(0);
      expect(m.load?.cpus).toBe(availableParallelism());
      expect(m.store?.availableKiB).toBeGreaterThan(0);
      // The store's whole df row: each builder's store is its own mount in its namespace.
      expect(m.store).toMatchObject({ mountPoint: expect.stringMatching(/^\/nix/), usedPercent: expect.any(Number) });
      expect(m.store!.filesystem).not.toBe('');
      expect(m.store!.totalKiB).toBeGreaterThanOrEqual(m.store!.availableKiB);
    }
    const kana = byHost.get('kana')!;
    expect(kana.nix?.extraPlatforms).toContain('aarch64-linux');
    expect(kana.nix?.systemFeatures).toContain('kvm');
    expect(kana.findings).toContainEqual({ severity: 'note', message: 'builds aarch64-linux through extra-platforms' });
    expect(byHost.get('ruby')!.nix?.systemFeatures).toEqual([]);
    expect(byHost.get('ruby')!.nix?.extraPlatforms).not.toContain('aarch64-linux');
  });

  it('prints a table with a verdict per host', async () => {
    const { code, text } = await check({ json: false, hosts: ['kana'] });
    expect(code).toBe(ExitCode.ok);
    expect(text).toMatch(new RegExp(`^kana\\s+ok\\s+\\d+ ms\\s+pinned\\s+${localNixVersion!.replace(/\./g, '\\.')}\\s+2\\.\\d+\\s+\\S*\\+aarch64-linux\\s+\\S*kvm`, 'm'));
    expect(text.trimEnd().split('\n').at(-1)).toBe('1 of 1 machines usable.');
  });

  it('a claimed feature or system the builder lacks is a warning that names it', async () => {
    const file = machinesFile('claims.json', {
      ruby: { supportedFeatures: ['kvm'] },
      aquamarine: { systems: [cluster.builder('aquamarine').systems[0], 'aarch64-linux'] },
    });
    const { code, byHost, text } = await check({ machines: file });
    expect(code, text).toBe(ExitCode.ok);
    const ruby = byHost.get('ruby')!;
    expect(ruby.verdict).toBe('warning');
    expect(ruby.reason).toMatch(/^claims kvm but its system-features \(none\) lack it/);
    const aquamarine = byHost.get('aquamarine')!;
    expect(aquamarine.verdict).toBe('warning');
    expect(aquamarine.reason).toMatch(/^claims aarch64-linux but the builder is \S+ with extra-platforms/);
    expect(byHost.get('kana')!.verdict).toBe('ok');
  });

  it('a builder whose sshd is stopped is unusable (exit 1), the others stay ok', async () => {
    await cluster.stopSshd('ruby');
    const { code, byHost } = await check();
    expect(code).toBe(ExitCode.hostsUnusable);
    const ruby = byHost.get('ruby')!;
    expect(ruby).toMatchObject({ verdict: 'unusable', reachable: false, authenticated: false, nixVersion: null });
    expect(ruby.reason).toMatch(/^cannot reach ruby at 127\.0\.0\.1:\d+: connection refused/);
    expect(byHost.get('aquamarine')!.verdict).toBe('ok');
    expect(byHost.get('kana')!.verdict).toBe('ok');
  });

  it('a wrong pinned host key makes the host unusable and names both fingerprints', async () => {
    const file = machinesFile('wrong-key.json', { ruby: { publicHostKey: cluster.builder('aquamarine').publicHostKey } });
    const { code, byHost } = await check({ machines: file });
    expect(code).toBe(ExitCode.hostsUnusable);
    const ruby = byHost.get('ruby')!;
    expect(ruby).toMatchObject({ verdict: 'unusable', reachable: true, authenticated: false });
    expect(ruby.hostKey).toEqual({ status: 'mismatch', fingerprints: [realFingerprint('ruby')] });
    expect(ruby.reason).toContain(`it offered ${realFingerprint('ruby')} but the machines file (publicHostKey) expects ${realFingerprint('aquamarine')}`);
    expect(byHost.get('kana')!.verdict).toBe('ok');
  });

  it('a key the builder refuses: reachable, host key accepted, not authenticated', async () => {
    const key = join(cluster.dir, 'stranger_key');
    await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    // Not the cluster's ssh_config: its IdentityFile would be offered after the refused key.
    const sshConfig = join(cluster.dir, 'ssh_config_without_keys');
    writeFileSync(sshConfig, 'Host *\n  HostName 127.0.0.1\n');
    const { code, byHost } = await check({ machines: machinesFile('stranger.json', { kana: { sshKey: key } }), sshConfig });
    expect(code).toBe(ExitCode.hostsUnusable);
    const kana = byHost.get('kana')!;
    expect(kana, kana.reason ?? '').toMatchObject({ verdict: 'unusable', reachable: true, authenticated: false, hostKey: { status: 'pinned' } });
    expect(kana.reason).toBe(`kana refused login as root: offered key file ${key}`);
  });

  it('a builder that hangs is unusable once the timeout is over, without holding up the others', async () => {
    cluster.pause('kana');
    const started = Date.now();
    const { code, byHost } = await check({ timeout: 2_000 });
    expect(Date.now() - started).toBeLessThan(9_000);
    expect(code).toBe(ExitCode.hostsUnusable);
    expect(byHost.get('kana')!.reason).toMatch(/^no complete answer within 2 s \(still waiting for: connecting\)/);
    expect(byHost.get('ruby')!.verdict).toBe('ok');
  });
});
