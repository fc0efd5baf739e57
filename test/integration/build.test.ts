import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { hostOf, instantiate, maxOverlap, offload, parseJson, ROOT, stamps } from './buildSupport.js';

/**
 * `offload build` against the real test cluster (aquamarine 3 jobs, ruby 2,
 * kana 2 with aarch64-linux and kvm). Every case instantiates fresh
 * derivations and checks the outputs' content in the local store.
 */
describe.runIf(integrationPrereqs())('offload build on the test cluster', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let machines: string[];

  beforeAll(async () => {
    cluster = await startTempCluster('build');
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('builds a diamond and prints its output path, with logs prefixed by host and name', async () => {
    const [drv] = await instantiate('diamond');
    const r = await offload(['build', drv!, ...machines]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.trim();
    expect(out).toMatch(/^\/nix\/store\/[a-z0-9]{32}-d-bottom$/);
    expect(stamps(out).map((s) => s.name).sort()).toEqual(['d-bottom', 'd-left', 'd-right', 'd-top', 'd-top']);
    expect(r.stderr).toMatch(/^\[[a-z]+\] d-top> building d-top$/m);
  });

  it('keeps intermediate outputs on the builders and streams them builder to builder (--max-jobs 0)', async () => {
    const [drv] = await instantiate('diamond');
    const r = await offload(['build', drv!, ...machines, '--max-jobs', '0', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(json.jobs.every((j) => j.host !== 'local' && j.status === 'built')).toBe(true);
    const out = json.outputs[drv!]!.out!;
    expect(readFileSync(out, 'utf8')).toMatch(/^d-bottom /);
    const top = json.jobs.find((j) => j.name === 'd-top')!;
    const topOut = outputOfDrv(top.drvPath);
    // Only the final output comes to the local store; d-top's stays on the builders.
    expect(existsSync(topOut)).toBe(false);
    for (const name of ['d-left', 'd-right']) {
      const job = json.jobs.find((j) => j.name === name)!;
      expect(job.sent.includes(topOut), `${name} on ${job.host}, d-top on ${top.host}`).toBe(job.host !== top.host);
    }
  });

  it('builds a derivation whose env is not UTF-8 with its bytes, under the output path it has locally', async () => {
    const [drv] = await instantiate('nonUtf8');
    const raw = readFileSync(join(ROOT, 'fixtures', 'nix', 'non-utf8.bin'));
    expect(readFileSync(drv!).includes(raw)).toBe(true);
    const r = await offload(['build', drv!, ...machines, '--max-jobs', '0', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(json.jobs[0]!.host).not.toBe('local');
    const out = json.outputs[drv!]!.out!;
    expect(out).toBe(outputOfDrv(drv!));
    expect(readFileSync(out)).toEqual(raw);
  });

  it('brings every output back with --copy-back all', async () => {
    const [drv] = await instantiate('diamond');
    const r = await offload(['build', drv!, ...machines, '--max-jobs', '0', '--copy-back', 'all', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    const top = json.jobs.find((j) => j.name === 'd-top')!;
    const topOut = outputOfDrv(top.drvPath);
    expect(readFileSync(topOut, 'utf8')).toMatch(/^d-top /);
  });

  it('runs a wide DAG on every builder without exceeding any maxJobs', async () => {
    const [drv] = await instantiate('wide');
    const r = await offload(['build', drv!, ...machines, '--max-jobs', '0', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    const built = stamps(json.outputs[drv!]!.out!);
    expect(built).toHaveLength(13);
    const limits = new Map(cluster.builders.map((b) => [b.name, b.maxJobs]));
    const perHost = new Map<string, Array<{ start: number; end: number }>>();
    for (const s of built.filter((b) => b.name !== 'wide-all')) {
      const host = hostOf(json, s.name);
      perHost.set(host, [...(perHost.get(host) ?? []), s]);
    }
    expect([...perHost.keys()].sort()).toEqual(['aquamarine', 'kana', 'ruby']);
    for (const [host, intervals] of perHost) expect(maxOverlap(intervals), host).toBeLessThanOrEqual(limits.get(host)!);
    // wide-all got the other builders' outputs straight from them, never through the local store.
    const all = json.jobs.find((j) => j.name === 'wide-all')!;
    for (const job of json.jobs.filter((j) => j !== all)) {
      const out = outputOfDrv(job.drvPath);
      expect(all.sent.includes(out), `${job.name} on ${job.host}, wide-all on ${all.host}`).toBe(job.host !== all.host);
      expect(existsSync(out)).toBe(false);
    }
    // Builds run side by side, not one after another: the first round starts on all three
    // builders at once (their first channels are open before the run), however loaded the machine.
    expect(maxOverlap(built.filter((b) => b.name !== 'wide-all'))).toBeGreaterThanOrEqual(3);
  });

  it('builds a multi-output derivation whose consumer reads both outputs', async () => {
    const [drv] = await instantiate('multiOutput');
    const r = await offload(['build', drv!, ...machines, '--max-jobs', '0']);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(r.stdout.trim(), 'utf8');
    expect(text).toMatch(/^split-user /);
    expect(text).toMatch(/^split /m);
    expect(text).toContain('dev of split');
  });

  it('sends an input source file to the builder', async () => {
    const [drv] = await instantiate('withSource');
    const r = await offload(['build', drv!, ...machines, '--max-jobs', '0', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(readFileSync(json.outputs[drv!]!.out!, 'utf8')).toContain('input source file, copied into the store by nix-instantiate');
    expect(json.jobs[0]!.sent.some((p) => p.endsWith('-src-input.txt'))).toBe(true);
    expect(r.stderr).toMatch(/\] with-source> input source file/);
  });

  it('puts the aarch64-linux and the kvm derivation on kana', async () => {
    const [drv] = await instantiate('platforms');
    const r = await offload(['build', drv!, ...machines, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(hostOf(json, 'arm-only')).toBe('kana');
    expect(hostOf(json, 'needs-kvm')).toBe('kana');
    expect(stamps(json.outputs[drv!]!.out!).map((s) => s.name).sort()).toEqual(['arm-only', 'needs-kvm', 'platforms-all']);
  });

  it('uses only the machines named by --hosts', async () => {
    const [drv] = await instantiate('diamond');
    const r = await offload(['build', drv!, ...machines, '--hosts', 'ruby', '--max-jobs', '0', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(json.jobs.map((j) => j.host)).toEqual(['ruby', 'ruby', 'ruby', 'ruby']);
    const built = stamps(json.outputs[drv!]!.out!);
    expect(built.map((s) => s.name).sort()).toEqual(['d-bottom', 'd-left', 'd-right', 'd-top', 'd-top']);
    expect(maxOverlap(built.filter((s, i, all) => all.findIndex((t) => t.name === s.name) === i))).toBeLessThanOrEqual(2);
  });
});

/** The `out` path of a derivation, read from the .drv in the local store. */
function outputOfDrv(drvPath: string): string {
  const text = readFileSync(drvPath, 'utf8');
  const m = /^Derive\(\[\("out","([^"]+)"/.exec(text);
  if (!m) throw new Error(`no out output in ${drvPath}`);
  return m[1]!;
}
