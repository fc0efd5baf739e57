import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type PostgresServer } from '../../scripts/cluster/postgresServer.js';
import { builderSpecs, startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, parseJson, startOffload, type CliResult } from './buildSupport.js';
import { buildCount, instantiateExpr, sleep, wideExpr } from './faultSupport.js';

/**
 * A fleet: several offload processes, each a "machine" of its own (its own
 * cache and history dirs), sharing the test cluster's builders through one
 * PostgreSQL state URL. Builds are counted on the builders themselves.
 */
describe.runIf(integrationPrereqs())('a fleet of runners sharing builders through PostgreSQL', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let server: PostgresServer;
  const homes: string[] = [];

  beforeAll(async () => {
    [cluster, server] = await Promise.all([
      startTempCluster(
        'fleet',
        builderSpecs(3).map((spec) => ({ ...spec, maxJobs: 2 })),
      ),
      startPostgres('fleet'),
    ]);
  });
  afterAll(async () => {
    await Promise.all([cluster?.dispose(), server?.dispose()]);
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  });

  /** One runner "machine": its own XDG cache (slot file, history), Nix as the tests use it. */
  function machineEnv(): NodeJS.ProcessEnv {
    const home = mkdtempSync(join(tmpdir(), 'offload-fleet-runner-'));
    homes.push(home);
    return { ...NIX_ENV, XDG_CACHE_HOME: home };
  }
  const machines = () => ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];

  /** Runs `runs` concurrently while sampling every builder's builds every 200 ms. */
  async function sampled(runs: Array<Promise<CliResult>>): Promise<{ results: CliResult[]; peak: Map<string, number> }> {
    const peak = new Map(cluster.builders.map((b) => [b.name, 0]));
    let done = false;
    const sampler = (async () => {
      while (!done) {
        for (const b of cluster.builders) peak.set(b.name, Math.max(peak.get(b.name)!, buildCount(cluster, b.name)));
        await sleep(200);
      }
    })();
    const results = await Promise.all(runs);
    done = true;
    await sampler;
    return { results, peak };
  }

  async function threeRunners(label: string, state: string[]): Promise<{ results: CliResult[]; peak: Map<string, number> }> {
    const drvs: string[] = [];
    for (const i of [1, 2, 3]) drvs.push((await instantiateExpr(wideExpr(`${label}-${i}`, 12, '2')))[0]!);
    return sampled(drvs.map((drv) => startOffload(['build', drv, ...machines(), ...state, '--json'], machineEnv()).result));
  }

  it('three runners × 12 leaves on three builders of maxJobs 2: never more than 2 builds on any builder', async () => {
    const { results, peak } = await threeRunners('fleet', ['--state', server.url]);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    for (const r of results) expect(parseJson(r).jobs.filter((j) => j.status === 'built')).toHaveLength(13);
    for (const [builder, n] of peak) expect(n, `${builder} ran ${n} builds at once`).toBeLessThanOrEqual(2);
    // The builders were really shared, not run one runner after another on one host.
    expect([...peak.values()].filter((n) => n === 2).length).toBeGreaterThanOrEqual(2);
    for (const r of results) expect(r.stderr + r.stdout).not.toContain(server.password);
  });

  it('the same three runners without shared state overload the builders (the test can fail)', async () => {
    const { results, peak } = await threeRunners('alone', []);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect(Math.max(...peak.values())).toBeGreaterThan(2);
  });

  it('PostgreSQL restarted mid-run: running builds finish, dispatch waits and resumes, every job built once', async () => {
    const [drv] = await instantiateExpr(wideExpr('restart', 10, '2'));
    const env = machineEnv();
    const cli = startOffload(['build', drv!, ...machines(), '--state', server.url, '--json'], env);
    await cli.stderrContains('started');
    await server.stop();
    await sleep(3_000);
    await server.start();
    const r = await cli.result;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/lost the connection to the shared state at postgres:\/\/offload@127\.0\.0\.1:\d+\/offload/);
    expect(r.stderr).toMatch(/the shared state at postgres:\/\/offload@127\.0\.0\.1:\d+\/offload is back/);
    expect(r.stderr).not.toContain(server.password);
    const json = parseJson(r);
    expect(json.jobs.every((j) => j.status === 'built' && j.attempts === 1)).toBe(true);
    // Nothing lost: every build is in the shared history, recorded once.
    const history = startOffload(['history', '--json', '--state', server.url], env);
    const names = (JSON.parse((await history.result).stdout) as { estimates: Array<{ name: string; samples: number }> }).estimates.filter((e) => e.name.startsWith('restart-'));
    expect(names).toHaveLength(11);
    expect(names.every((e) => e.samples === 1)).toBe(true);
  });
});
