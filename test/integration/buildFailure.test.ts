import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, offload, parseJson } from './buildSupport.js';

/**
 * A derivation that fails (fixtures/nix/cases.nix `failing`): `broken` exits
 * 3 after 40 log lines; `after-broken` needs it; `independent` (2 s) runs
 * meanwhile and `late` needs `independent`.
 */
describe.runIf(integrationPrereqs())('offload build when a derivation fails', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let machines: string[];

  beforeAll(async () => {
    cluster = await startTempCluster('build-failure');
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('exits 100 (as nix-build) naming the derivation and host, shows the log tail, skips dependents and starts nothing new', async () => {
    const roots = await instantiate('failing');
    const r = await offload(['build', ...roots, ...machines, '--json']);
    expect(r.code, r.stderr).toBe(100);
    const json = parseJson(r);
    const status = Object.fromEntries(json.jobs.map((j) => [j.name, j.status]));
    expect(status).toEqual({ broken: 'failed', 'after-broken': 'skipped', independent: 'built', late: 'not-started' });
    const broken = json.jobs.find((j) => j.name === 'broken')!;
    expect(r.stderr).toContain(`offload: building ${broken.drvPath} on ${broken.host} failed: PermanentFailure`);
    const tail = r.stderr.slice(r.stderr.indexOf('log lines of broken:'));
    expect(tail).toContain('  broken log line 40');
    expect(tail).toContain('  broken log line 20');
    expect(tail).not.toContain('broken log line 10\n');
    expect(r.stderr).toContain('skipped 1 dependent derivation: after-broken');
    expect(json.outputs).toEqual({});
  });

  it('with --keep-going builds everything that does not need the failed derivation', async () => {
    const roots = await instantiate('failing');
    const r = await offload(['build', ...roots, ...machines, '--keep-going', '--json']);
    expect(r.code, r.stderr).toBe(100);
    const json = parseJson(r);
    const status = Object.fromEntries(json.jobs.map((j) => [j.name, j.status]));
    expect(status).toEqual({ broken: 'failed', 'after-broken': 'skipped', independent: 'built', late: 'built' });
    const lateRoot = roots.find((d) => d.endsWith('-late.drv'))!;
    const out = json.outputs[lateRoot]!.out!;
    expect(readFileSync(out, 'utf8')).toMatch(/^late [\d.]+ [\d.]+\nindependent /);
    const afterRoot = roots.find((d) => d.endsWith('-after-broken.drv'))!;
    expect(json.outputs[afterRoot]).toBeUndefined();
  });

  it('prints the output paths of what was built even when a sibling root failed (plain output)', async () => {
    const roots = await instantiate('failing');
    const r = await offload(['build', ...roots, ...machines, '--keep-going']);
    expect(r.code).toBe(100);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/-late$/);
    expect(existsSync(lines[0]!)).toBe(true);
  });
});
