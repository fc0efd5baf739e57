import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, offload } from './buildSupport.js';

/**
 * What a person or a CI job sees of `offload build` and `plan` on the real
 * test cluster: NDJSON events, nom's internal-json, the HTML report, one
 * line per event when stderr is not a terminal, and estimates learned from
 * one build showing up in the next plan.
 */
describe.runIf(integrationPrereqs())('offload build and plan output on the test cluster', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let machines: string[];
  const dir = mkdtempSync(join(tmpdir(), 'offload-experience-'));
  const history = join(dir, 'history.sqlite');

  beforeAll(async () => {
    cluster = await startTempCluster('experience');
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--history-file', history];
  });
  afterAll(async () => {
    await cluster?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--json-events: NDJSON with started and finished per job, then the result; --report has a lane per host', async () => {
    const [drv] = await instantiate('diamond');
    const report = join(dir, 'run.html');
    const r = await offload(['build', drv!, ...machines, '--json-events', '--report', report]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; jobId?: string; status?: string; jobs?: Array<{ drvPath: string; status: string }> });
    const result = lines.at(-1)!;
    expect(result.type).toBe('result');
    expect(lines.slice(0, -1).every((l) => l.type !== 'result')).toBe(true);
    expect(result.jobs).toHaveLength(4);
    for (const job of result.jobs!) {
      expect(job.status).toBe('built');
      expect(lines.filter((l) => l.type === 'jobStarted' && l.jobId === job.drvPath)).toHaveLength(1);
      expect(lines.filter((l) => l.type === 'jobFinished' && l.jobId === job.drvPath && l.status === 'built')).toHaveLength(1);
    }
    expect(lines.some((l) => l.type === 'buildLog')).toBe(true);

    const html = readFileSync(report, 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html.trimEnd().endsWith('</html>')).toBe(true);
    for (const host of ['local', ...cluster.builders.map((b) => b.name)]) expect(html).toContain(`data-host="${host}"`);
    for (const name of ['d-top', 'd-left', 'd-right', 'd-bottom']) expect(html).toContain(name);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a second plan of the same derivation names (fresh hashes) takes its estimates from the history', async () => {
    const [drv] = await instantiate('diamond');
    const r = await offload(['plan', drv!, ...machines, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout) as { jobs: Array<{ name: string; estimate: { source: string; seconds: number } }> };
    expect(plan.jobs.map((j) => j.name).sort()).toEqual(['d-bottom', 'd-left', 'd-right', 'd-top']);
    for (const job of plan.jobs) expect(job.estimate.source, job.name).toBe('history');
    // The fixtures sleep about a second each: a learned estimate, not a rule's minutes.
    for (const job of plan.jobs) expect(job.estimate.seconds, job.name).toBeLessThan(30);
    const fresh = await offload(['plan', drv!, ...machines, '--no-history', '--json']);
    const rules = JSON.parse(fresh.stdout) as { jobs: Array<{ estimate: { source: string } }> };
    expect(rules.jobs.every((j) => j.estimate.source !== 'history')).toBe(true);
  });

  it('--log-format internal-json: every stderr line is a Nix activity message nom can read', async () => {
    const [drv] = await instantiate('diamond');
    const r = await offload(['build', drv!, ...machines, '--no-history', '--log-format', 'internal-json']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines.every((l) => l.startsWith('@nix '))).toBe(true);
    const msgs = lines.map((l) => JSON.parse(l.slice('@nix '.length)) as { action: string; id?: number; type?: number; fields?: unknown[] });
    const starts = msgs.filter((m) => m.action === 'start' && m.type === 105);
    expect(starts).toHaveLength(4);
    expect(msgs.filter((m) => m.action === 'stop').map((m) => m.id).sort()).toEqual(starts.map((m) => m.id).sort());
    expect(msgs.some((m) => m.action === 'result' && m.type === 101 && String(m.fields?.[0]).startsWith('building d-'))).toBe(true);
    expect(r.stdout.trim()).toMatch(/^\/nix\/store\/[a-z0-9]{32}-d-bottom$/);
  });

  it('stderr that is not a terminal gets one line per event, the same events the log file records', async () => {
    const [drv] = await instantiate('diamond');
    const logFile = join(dir, 'run.log');
    const r = await offload(['build', drv!, ...machines, '--log-file', logFile]);
    expect(r.code, r.stderr).toBe(0);
    const entries = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind?: string; msg: string; t: number; event?: { type: string } });
    const events = entries.filter((e) => e.kind === 'event');
    expect(events.filter((e) => e.event?.type === 'jobStarted')).toHaveLength(4);
    expect(events.filter((e) => e.event?.type === 'jobFinished')).toHaveLength(4);
    const eventLines = r.stderr.split('\n').filter((l) => /^\[\d+\.\ds\] [^ ]+: /.test(l) && !l.includes('offload: '));
    expect(eventLines).toEqual(events.map((e) => `[${e.t.toFixed(1)}s] ${e.msg}`));
    expect(eventLines.filter((l) => / started d-/.test(l))).toHaveLength(4);
    expect(eventLines.filter((l) => / built in \d/.test(l))).toHaveLength(4);
    expect(r.stderr).toMatch(/^\[[a-z]+\] d-top> building d-top$/m);
    expect(r.stderr).toMatch(/offload: 4 built in [\d.]+ s/);
  });
});
