import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { offload, parseJson } from './buildSupport.js';
import { instantiateExpr, wideExpr } from './faultSupport.js';

/**
 * `offload build` logs in to builders given on the command line while Nix's
 * configuration and the closure are still read (run/runStart.ts
 * connectBuilders). What that must not change: how a build goes, how an
 * unreachable builder is reported, and a run with nothing to build, which
 * must not wait for a login it turned out not to need.
 */
describe.runIf(integrationPrereqs())('offload build reaching its builders early', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let builders: string[];

  beforeAll(async () => {
    cluster = await startTempCluster('early', [{ name: 'aquamarine' }, { name: 'ruby' }]);
    // Nix format without a systems column: each builder gets the local system, which only Nix says (after the login started).
    builders = ['--builders', 'ssh://aquamarine - - 2; ssh://ruby - - 2', '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('builds on builders from --builders that name no systems', async () => {
    const [drv] = await instantiateExpr(wideExpr('early', 4, '0'));
    const r = await offload(['build', drv!, ...builders, '--json', '--no-out-link']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(json.jobs).toHaveLength(5);
    expect(json.jobs.every((j) => j.status === 'built' && (j.host === 'aquamarine' || j.host === 'ruby'))).toBe(true);
  });

  it('reports a builder it could not log in to as down, with the reason, and builds elsewhere', async () => {
    await cluster.stopSshd('ruby');
    try {
      const [drv] = await instantiateExpr(wideExpr('early-down', 4, '0'));
      const r = await offload(['build', drv!, ...builders, '--json', '--no-out-link']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/ruby is down \(cannot reach ruby at 127\.0\.0\.1:\d+: connection refused \(no sshd listening on that port\)\)/);
      const json = parseJson(r);
      expect(new Set(json.jobs.map((j) => j.host))).toEqual(new Set(['aquamarine']));
    } finally {
      await cluster.startSshd('ruby');
    }
  });

  it('ends a run with nothing to build without waiting for a login still in progress', async () => {
    const [drv] = await instantiateExpr('mk { name = "early-noop"; }');
    const first = await offload(['build', drv!, ...builders, '--no-out-link']);
    expect(first.code, first.stderr).toBe(0);
    // A stopped sshd accepts the TCP connection (the kernel does) and never answers: the login hangs until the connect timeout.
    cluster.pause('ruby');
    try {
      const started = Date.now();
      const again = await offload(['build', drv!, ...builders, '--no-out-link', '--connect-timeout', '120']);
      const seconds = (Date.now() - started) / 1000;
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toBe(first.stdout);
      expect(again.stderr).not.toMatch(/ruby is down/);
      // Bound tied to the mechanism: waiting for the login would take the whole 120 s connect timeout.
      expect(seconds).toBeLessThan(60);
    } finally {
      cluster.resume('ruby');
    }
  });
});
