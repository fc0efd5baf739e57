import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, offload, parseJson, stamps, startOffload } from './buildSupport.js';

/** Hosts that cannot be used, and a run cancelled with SIGINT. */
describe.runIf(integrationPrereqs())('offload build when hosts fail or the user interrupts', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let machines: string[];

  beforeAll(async () => {
    cluster = await startTempCluster('build-hosts');
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('marks an unreachable builder down and builds its share elsewhere', async () => {
    await cluster.stopSshd('ruby');
    try {
      const [drv] = await instantiate('wide');
      const r = await offload(['build', drv!, ...machines, '--hosts', 'ruby,aquamarine', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/offload: ruby is down \(cannot reach ruby at 127\.0\.0\.1:\d+: .*\); its jobs go to other machines/);
      const json = parseJson(r);
      expect(new Set(json.jobs.map((j) => j.host))).toEqual(new Set(['aquamarine']));
      expect(stamps(json.outputs[drv!]!.out!)).toHaveLength(13);
    } finally {
      await cluster.startSshd('ruby');
    }
  });

  it('fails clearly when the only builder that fits is down', async () => {
    await cluster.stopSshd('kana');
    try {
      const [drv] = await instantiate('platforms');
      const r = await offload(['build', drv!, ...machines]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/offload: cannot build 3 derivations \(.*-arm-only\.drv.*\): no available machine fits them \(kana is down: cannot reach kana/);
      expect(r.stdout).toBe('');
    } finally {
      await cluster.startSshd('kana');
    }
  });

  it('stops on SIGINT: closes the channels, prints a summary and exits 130', async () => {
    const [drv] = await instantiate('slow');
    const cli = startOffload(['build', drv!, ...machines]);
    await cli.stderrContains('slow> building slow');
    const interruptedAt = Date.now();
    cli.child.kill('SIGINT');
    const r = await cli.result;
    expect(r.code, r.stderr).toBe(130);
    expect(Date.now() - interruptedAt).toBeLessThan(5_000);
    expect(r.stderr).toContain('offload: interrupted; stopping the builds and closing connections (interrupt again to exit at once)');
    expect(r.stderr).toMatch(/offload: 1 interrupted in [\d.]+ s/);
    expect(r.stdout).toBe('');
  });

  it('still builds normally after the hosts came back', async () => {
    const [drv] = await instantiate('platforms');
    const r = await offload(['build', drv!, ...machines]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(r.stdout.trim(), 'utf8')).toMatch(/^platforms-all /);
  });
});
