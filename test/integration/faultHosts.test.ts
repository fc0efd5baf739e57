import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, offload, parseJson, stamps, startOffload } from './buildSupport.js';
import { BlackHoleProxy, building, editedMachines, eventually, instantiateExpr, job, sleep, wideExpr } from './faultSupport.js';

/**
 * Builders that die, vanish, hang or keep failing while `offload build`
 * runs (docs/faults.md). One cluster for the file: each case restores the
 * builders it broke.
 */
describe.runIf(integrationPrereqs())('offload build when builders fail', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let ssh: string[];

  beforeAll(async () => {
    cluster = await startTempCluster('fault-hosts');
    ssh = ['--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  const machines = () => ['--machines', cluster.machinesFile, ...ssh];

  it('requeues the jobs of a builder killed mid-build on another host and still exits 0', async () => {
    const [drv] = await instantiateExpr(wideExpr('killed', 6, '2'));
    const cli = startOffload(['build', drv!, ...machines(), '--hosts', 'aquamarine,ruby', '--json']);
    try {
      expect(await eventually(() => building(cluster, 'ruby'), 20_000)).toBe(true);
      await cluster.kill('ruby');
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      const json = parseJson(r);
      expect(json.jobs.every((j) => j.status === 'built')).toBe(true);
      const rerun = json.jobs.filter((j) => j.attempts > 1);
      expect(rerun.length).toBeGreaterThan(0);
      expect(rerun.every((j) => j.host === 'aquamarine')).toBe(true);
      expect(r.stderr).toMatch(/ruby (failed|is down) \((connection to ruby lost|cannot reach ruby)/);
      expect(r.stderr).toMatch(/ruby (was taken out of rotation once|had 1 failure but stayed in rotation) \(/);
      expect(stamps(json.outputs[drv!]!.out!)).toHaveLength(7);
    } finally {
      await cluster.startSshd('ruby');
    }
  });

  it('builds the producer again when the builder holding the only copy of its output dies before the consumer starts', async () => {
    // kana only takes kvm jobs, so p goes to aquamarine or ruby and c (kvm) to kana.
    const file = editedMachines(cluster, 'kana-kvm-only', (ms) =>
      ms.map((m) => (m.hostName === 'kana' ? { ...m, supportedFeatures: ['kvm'], mandatoryFeatures: ['kvm'] } : m)),
    );
    const [drv] = await instantiateExpr(
      'let p = mk { name = "p"; sleep = "0"; }; gate = mk { name = "gate"; sleep = "4"; }; in mk { name = "c"; features = [ "kvm" ]; deps = [ p gate ]; }',
    );
    const cli = startOffload(['build', drv!, '--machines', file, ...ssh, '--json']);
    let holder = '';
    try {
      // Kill p's builder once p counts as built: its output is registered there and the result is on its way.
      const holds = (name: string) => readdirSync(cluster.builder(name).storeDir).some((n) => n.endsWith('-p'));
      expect(await eventually(() => holds('aquamarine') || holds('ruby'), 20_000)).toBe(true);
      holder = holds('aquamarine') ? 'aquamarine' : 'ruby';
      await sleep(500);
      await cluster.kill(holder);
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      const json = parseJson(r);
      expect(r.stderr).toContain(`the only copy of p's outputs was lost with ${holder}; building it again`);
      const p = job(json, 'p');
      expect(p.attempts).toBe(2);
      expect(p.host).not.toBe(holder);
      expect(job(json, 'c').host).toBe('kana');
      expect(stamps(json.outputs[drv!]!.out!).map((s) => s.name).sort()).toEqual(['c', 'gate', 'p']);
    } finally {
      if (holder) await cluster.startSshd(holder);
    }
  });

  it('marks a builder whose port is closed down at the start, with the reason, and builds elsewhere', async () => {
    await cluster.stopSshd('ruby');
    try {
      const [drv] = await instantiateExpr(wideExpr('closed', 6, '0.2'));
      const r = await offload(['build', drv!, ...machines(), '--hosts', 'aquamarine,ruby', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/ruby is down \(cannot reach ruby at 127\.0\.0\.1:\d+: connection refused \(no sshd listening on that port\)\)/);
      const json = parseJson(r);
      expect(new Set(json.jobs.map((j) => j.host))).toEqual(new Set(['aquamarine']));
      // Known down from the start: no job ever tried it.
      expect(json.jobs.every((j) => j.attempts === 1)).toBe(true);
    } finally {
      await cluster.startSshd('ruby');
    }
  });

  it('marks a builder whose name does not resolve down, and fails clearly when no other host fits', async () => {
    // Empty DNS labels are refused by the resolver itself: no query leaves the machine.
    const ghost = 'ghost-builder..invalid';
    const withGhost = editedMachines(cluster, 'ghost', (ms) => [
      ...ms.filter((m) => m.hostName === 'aquamarine'),
      { ...ms.find((m) => m.hostName === 'ruby')!, hostName: ghost, port: 22 },
    ]);
    const [drv] = await instantiateExpr(wideExpr('ghost', 6, '0.2'));
    const r = await offload(['build', drv!, '--machines', withGhost, ...ssh]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${ghost} is down (cannot reach ${ghost} at ${ghost}:22: unknown host name)`);

    const onlyGhost = editedMachines(cluster, 'only-ghost', (ms) => [{ ...ms.find((m) => m.hostName === 'ruby')!, hostName: ghost, port: 22 }]);
    const [lone] = await instantiateExpr('mk { name = "lone"; }');
    const alone = await offload(['build', lone!, '--machines', onlyGhost, ...ssh]);
    expect(alone.code, alone.stderr).toBe(1);
    expect(alone.stderr).toMatch(
      new RegExp(`offload: cannot build 1 derivation \\(.*-lone\\.drv\\): no available machine fits them \\(${ghost.replace(/\./g, '\\.')} is down: cannot reach .*unknown host name\\)\\.\n`),
    );
    expect(alone.stderr).not.toMatch(/\n\s+at /);
  });

  it('notices a hung (SIGSTOPped) builder through keep-alives within the bound and requeues its jobs', async () => {
    const [drv] = await instantiateExpr(wideExpr('hung', 6, '2'));
    const cli = startOffload(['build', drv!, ...machines(), '--hosts', 'aquamarine,ruby', '--keepalive-interval', '0.5', '--json']);
    try {
      expect(await eventually(() => building(cluster, 'ruby'), 20_000)).toBe(true);
      cluster.pause('ruby');
      const pausedAt = Date.now();
      await cli.stderrContains('ruby is down');
      // 3 unanswered keep-alives 0.5 s apart: noticed after about 2 s; allow for a loaded machine.
      expect(Date.now() - pausedAt).toBeLessThan(5_000);
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('ruby is down (connection to ruby lost: no answer to 3 keep-alives 500 ms apart)');
      const json = parseJson(r);
      expect(json.jobs.every((j) => j.status === 'built')).toBe(true);
      expect(json.jobs.filter((j) => j.attempts > 1).every((j) => j.host === 'aquamarine')).toBe(true);
    } finally {
      cluster.resume('ruby');
    }
  });

  it('notices a builder whose traffic is dropped (connection open, no bytes) and requeues its jobs', async () => {
    const ruby = cluster.builder('ruby');
    const proxy = await BlackHoleProxy.start(ruby.port);
    try {
      // Reach ruby through the proxy: a machine named by address, so ssh_config does not redirect it.
      const file = editedMachines(cluster, 'proxied', (ms) => [
        ...ms.filter((m) => m.hostName === 'aquamarine'),
        { ...ms.find((m) => m.hostName === 'ruby')!, hostName: '127.0.0.1', port: proxy.port },
      ]);
      const [drv] = await instantiateExpr(wideExpr('dropped', 6, '2'));
      const cli = startOffload(['build', drv!, '--machines', file, ...ssh, '--keepalive-interval', '0.5', '--json']);
      expect(await eventually(() => building(cluster, 'ruby'), 20_000)).toBe(true);
      proxy.drop();
      const droppedAt = Date.now();
      await cli.stderrContains('127.0.0.1 is down');
      expect(Date.now() - droppedAt).toBeLessThan(5_000);
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('no answer to 3 keep-alives 500 ms apart');
      expect(parseJson(r).jobs.every((j) => j.status === 'built')).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('keeps a dead builder out of rotation for the whole run, retries it after a doubling back-off and uses it once it is back', async () => {
    await cluster.stopSshd('ruby');
    let restarted = false;
    try {
      const [drv] = await instantiateExpr(wideExpr('backoff', 14, '1.5'));
      const cli = startOffload(['build', drv!, ...machines(), '--hosts', 'aquamarine,ruby', '--host-backoff', '0.5', '--json']);
      await cli.stderrContains('retrying it in 1 s');
      await cluster.startSshd('ruby');
      restarted = true;
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      const down = r.stderr.match(/ruby is down \(cannot reach ruby[^\n]*retrying it in ([\d.]+) s/g) ?? [];
      expect(down.map((line) => line.replace(/.* in /, ''))).toEqual(expect.arrayContaining(['0.5 s', '1 s']));
      expect(r.stderr).toContain('ruby is back in rotation');
      const json = parseJson(r);
      // Nix would try the dead builder for every derivation; here no job was ever sent to it while it was down.
      expect(json.jobs.every((j) => j.attempts === 1)).toBe(true);
      expect(json.jobs.some((j) => j.host === 'ruby')).toBe(true);
      expect(r.stderr).toMatch(/ruby was taken out of rotation (\d+ times) \(\d+ failures; last: cannot reach ruby[^\n]*\); back in rotation at the end/);
    } finally {
      if (!restarted) await cluster.startSshd('ruby');
    }
  });

  it('retries a transient result on another fitting host and takes the builder that keeps returning it out', async () => {
    // ruby claims aarch64-linux (and is the fastest), but its Nix cannot build it: Nix answers MiscFailure.
    const file = editedMachines(cluster, 'ruby-lies', (ms) =>
      ms.map((m) => (m.hostName === 'ruby' ? { ...m, systems: ['x86_64-linux', 'aarch64-linux'], speedFactor: 4 } : m)),
    );
    const [drv] = await instantiateExpr('mk { name = "arm"; system = "aarch64-linux"; }');
    const r = await offload(['build', drv!, '--machines', file, ...ssh, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const arm = job(parseJson(r), 'arm');
    expect(arm.host).toBe('kana');
    expect(arm.attempts).toBe(3);
    expect(r.stderr).toMatch(/arm on ruby: MiscFailure: .*aarch64-linux.*; trying again/);
    expect(r.stderr).toMatch(/ruby is down \(arm: MiscFailure/);
    expect(r.stderr).toMatch(/ruby was taken out of rotation once \(2 failures; last: arm: MiscFailure/);
  });

  it('does not retry a build that failed for good: dependents skipped, log tail shown, exit 100', async () => {
    const roots = await instantiate('failing');
    const r = await offload(['build', ...roots, ...machines(), '--keep-going', '--json']);
    expect(r.code, r.stderr).toBe(100);
    const json = parseJson(r);
    const broken = job(json, 'broken');
    expect(broken).toMatchObject({ status: 'failed', attempts: 1 });
    expect(job(json, 'after-broken').status).toBe('skipped');
    expect(r.stderr).not.toContain('trying again');
    // The log tail of the failed build is shown.
    expect(r.stderr).toContain('broken log line 40');
    expect(r.stderr).toContain('broken log line 20');
    expect(r.stderr).not.toMatch(/is down/);
  });

  /** `SHA256:<base64>` as ssh-keygen -l prints it, from a publicHostKey field. */
  function fingerprint(publicHostKey: string): string {
    const blob = Buffer.from(Buffer.from(publicHostKey, 'base64').toString('utf8').trim().split(/\s+/)[1]!, 'base64');
    return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  }

  /** What aquamarine's sshd logged while `action` ran. */
  async function sshdLogDuring(action: () => Promise<void>): Promise<string> {
    const log = cluster.builder('aquamarine').sshdLog;
    const before = readFileSync(log, 'utf8').length;
    await action();
    return readFileSync(log, 'utf8').slice(before);
  }

  it('refuses a wrong host key before logging in, naming the host and both fingerprints', async () => {
    const aquamarine = cluster.builder('aquamarine');
    const ruby = cluster.builder('ruby');
    const file = editedMachines(cluster, 'wrong-key', (ms) =>
      ms.filter((m) => m.hostName === 'aquamarine').map((m) => ({ ...m, publicHostKey: ruby.publicHostKey })),
    );
    const [drv] = await instantiateExpr('mk { name = "wrong-key"; }');
    let r!: Awaited<ReturnType<typeof offload>>;
    const log = await sshdLogDuring(async () => {
      r = await offload(['build', drv!, '--machines', file, ...ssh]);
    });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      `host key of aquamarine (127.0.0.1:${aquamarine.port}) does not match: it offered ssh-ed25519 ${fingerprint(aquamarine.publicHostKey)} but the machines file (publicHostKey) expects ssh-ed25519 ${fingerprint(ruby.publicHostKey)}`,
    );
    expect(r.stderr).toMatch(/aquamarine was taken out for the rest of the run/);
    // The handshake stopped at the host key: no login was even tried.
    expect(log).toContain('Connection from 127.0.0.1');
    expect(log).not.toMatch(/publickey/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('refuses an unknown host key unless ssh_config accepts it, says how to pin it; accept-new records it once and refuses a changed key next time', async () => {
    const aquamarine = cluster.builder('aquamarine');
    const emptyKnownHosts = join(cluster.dir, 'empty_known_hosts');
    writeFileSync(emptyKnownHosts, '');
    const emptyGlobal = join(cluster.dir, 'empty_global_known_hosts');
    writeFileSync(emptyGlobal, '');
    const config = readFileSync(cluster.sshConfigFile, 'utf8').replaceAll(
      `UserKnownHostsFile ${cluster.knownHostsFile}`,
      `UserKnownHostsFile ${emptyKnownHosts}\n  GlobalKnownHostsFile ${emptyGlobal}`,
    );
    const strict = join(cluster.dir, 'ssh_config.strict');
    const lax = join(cluster.dir, 'ssh_config.lax');
    writeFileSync(strict, config);
    writeFileSync(lax, config.replaceAll('StrictHostKeyChecking yes', 'StrictHostKeyChecking accept-new'));
    const file = editedMachines(cluster, 'unpinned', (ms) =>
      ms.filter((m) => m.hostName === 'aquamarine').map(({ publicHostKey: _pin, ...m }) => m),
    );
    const [drv] = await instantiateExpr('mk { name = "unpinned"; }');
    let r!: Awaited<ReturnType<typeof offload>>;
    const log = await sshdLogDuring(async () => {
      r = await offload(['build', drv!, '--machines', file, '--ssh-config', strict, '--max-jobs', '0', '--debug']);
    });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      `host key of aquamarine (127.0.0.1:${aquamarine.port}) is not known: it offered ssh-ed25519 ${fingerprint(aquamarine.publicHostKey)}, which is neither pinned in the machines file nor listed in ${emptyKnownHosts}, ${emptyGlobal}; ` +
        `if that fingerprint is the host's, pin it with "publicHostKey": "${aquamarine.publicHostKey}" or run: ssh-keyscan -p ${aquamarine.port} -t ed25519 127.0.0.1 >> ~/.ssh/known_hosts`,
    );
    expect(log).not.toMatch(/publickey/);
    // --debug: the final error comes with its stack.
    expect(r.stderr).toMatch(/no available machine fits them[^]*\n\s+at /);

    const accepted = await offload(['build', drv!, '--machines', file, '--ssh-config', lax, '--max-jobs', '0']);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(readFileSync(accepted.stdout.trim(), 'utf8')).toMatch(/^unpinned /);
    // accept-new recorded the key under the HostKeyAlias in the first UserKnownHostsFile, and said so once.
    const aquamarineLine = Buffer.from(aquamarine.publicHostKey, 'base64').toString();
    expect(readFileSync(emptyKnownHosts, 'utf8')).toBe(`aquamarine ${aquamarineLine}\n`);
    expect(accepted.stderr.match(/permanently added aquamarine \(ssh-ed25519 SHA256:\S+\) to the list of known hosts in /g)).toHaveLength(1);
    // Next run: known now, so nothing more is written.
    const [again] = await instantiateExpr('mk { name = "unpinned-again"; }');
    const known = await offload(['build', again!, '--machines', file, '--ssh-config', lax, '--max-jobs', '0']);
    expect(known.code, known.stderr).toBe(0);
    expect(known.stderr).not.toContain('permanently added');
    expect(readFileSync(emptyKnownHosts, 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
    // A different key recorded for it (the host "changed"): refused, accept-new only takes keys nothing knows.
    const otherKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9uGuDT2rdvPcurj017BdtANT5cgNg8OL+winWQMItm';
    writeFileSync(emptyKnownHosts, `aquamarine ${otherKey}\n`);
    const [third] = await instantiateExpr('mk { name = "unpinned-changed"; }');
    const changed = await offload(['build', third!, '--machines', file, '--ssh-config', lax, '--max-jobs', '0']);
    expect(changed.code, changed.stderr).toBe(1);
    expect(changed.stderr).toContain(`host key of aquamarine (127.0.0.1:${aquamarine.port}) does not match`);
  });

  it('still builds on every builder after the faults above', async () => {
    const [drv] = await instantiateExpr(wideExpr('after', 7, '0.5'));
    const r = await offload(['build', drv!, ...machines(), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(new Set(json.jobs.map((j) => j.host))).toEqual(new Set(['aquamarine', 'ruby', 'kana']));
    expect(readFileSync(json.outputs[drv!]!.out!, 'utf8')).toMatch(/^after-top /);
  });
});
