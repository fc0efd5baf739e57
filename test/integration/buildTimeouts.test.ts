import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, offload, parseJson, ROOT } from './buildSupport.js';
import { buildCount } from './faultSupport.js';

/**
 * --max-silent-time and --timeout (and nix.conf's max-silent-time and
 * timeout) travel with each build in the serve protocol's build options, so
 * the builder's own Nix stops the build; offload then exits 101 like
 * nix-build. One builder with one slot shows the slot is free again at once.
 */
describe.runIf(integrationPrereqs())('build timeouts reach the builders', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let machines: string[];

  beforeAll(async () => {
    cluster = await startTempCluster('timeouts', [{ name: 'ruby', maxJobs: 1 }]);
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  /** `silent` prints one line, then sleeps 60 s; `silent-user` needs it, so the scheduler starts it first. */
  async function instantiate(): Promise<{ silentUser: string; independent: string }> {
    const nonce = randomBytes(6).toString('hex');
    const expr = `let inherit (import ${ROOT}/fixtures/nix/lib.nix { nonce = "${nonce}"; }) mk;
      silent = mk { name = "silent"; sleep = "60"; };
    in { silentUser = mk { name = "silent-user"; deps = [ silent ]; }; independent = mk { name = "independent"; sleep = "0"; }; }`;
    const { stdout } = await promisify(execFile)('nix-instantiate', ['-E', expr, '-A', 'silentUser', '-A', 'independent'], { env: NIX_ENV });
    const [silentUser, independent] = stdout.trim().split('\n');
    return { silentUser: silentUser!, independent: independent! };
  }

  it('--max-silent-time stops a silent remote build: exit 101, the builder slot free for the next job', async () => {
    const { silentUser, independent } = await instantiate();
    const r = await offload(['build', silentUser, independent, ...machines, '--max-silent-time', '2', '--keep-going', '--json']);
    expect(r.code, r.stderr).toBe(101);
    const jobs = new Map(parseJson(r).jobs.map((j) => [j.name, j]));
    expect(jobs.get('silent')).toMatchObject({ host: 'ruby', status: 'failed', failure: 'timedOut', attempts: 1 });
    expect(jobs.get('silent')!.error).toMatch(/^TimedOut: .*timed out after 2 seconds of silence/);
    expect(jobs.get('silent-user')!.status).toBe('skipped');
    // ruby has one slot: `independent` got it when the silent build was stopped.
    expect(jobs.get('independent')).toMatchObject({ host: 'ruby', status: 'built' });
    expect(jobs.get('independent')!.start!).toBeGreaterThanOrEqual(jobs.get('silent')!.end! - 0.5);
    expect(buildCount(cluster, 'ruby')).toBe(0);
  });

  it("nix.conf's timeout (here from NIX_CONFIG) stops a remote build that runs too long: exit 101", async () => {
    const { silentUser } = await instantiate();
    const r = await offload(['build', silentUser, ...machines, '--json'], { ...NIX_ENV, NIX_CONFIG: 'timeout = 2' });
    expect(r.code, r.stderr).toBe(101);
    const silent = parseJson(r).jobs.find((j) => j.name === 'silent')!;
    expect(silent).toMatchObject({ status: 'failed', failure: 'timedOut' });
    expect(silent.error).toMatch(/timed out after 2 seconds/);
    expect(buildCount(cluster, 'ruby')).toBe(0);
  });
});
