import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../src/cli/atomicWrite.js';
import { planHistory, writePlanSvg } from '../../src/cli/planOutputs.js';
import { SqliteBuildHistory } from '../../src/history/sqliteBuildHistory.js';
import { planToJson, planToText, type PlanReportInput } from '../../src/report/planReport.js';
import { planBuild } from '../../src/schedule/planBuild.js';
import { OffloadError } from '../../src/errors/offloadError.js';
import { hosts, jobs } from './observersFixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'offload-observers-plan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function historyWithTwoHosts(file: string): Promise<void> {
  const h = new SqliteBuildHistory(file);
  const at = new Date('2025-01-01T00:00:00Z');
  await h.record([
    { name: 'hello-2.12.1', system: 'x86_64-linux', host: 'ruby', speedFactor: 1, seconds: 100, finishedAt: at, status: 'built' },
    { name: 'hello-2.12.1', system: 'x86_64-linux', host: 'kana', speedFactor: 1, seconds: 50, finishedAt: at, status: 'built' },
  ]);
  await h.close();
}

const local = { kind: 'local' } as const;
const keys = jobs.map((j) => ({ name: j.name, system: j.system }));

function input(extra: Partial<PlanReportInput> = {}): PlanReportInput {
  return { plan: planBuild(jobs, hosts), jobs: new Map(jobs.map((j) => [j.id, j])), hosts, alreadyBuilt: [], machinesSource: 'test', ...extra };
}

describe('plan with history', () => {
  it('reads estimates and learned host speeds from an existing history, and closes it', async () => {
    const file = join(dir, 'history.sqlite');
    await historyWithTwoHosts(file);
    const warnings: string[] = [];
    const history = await planHistory(local, { historyFile: file }, keys, (m) => warnings.push(m));
    expect(history.lookup?.('hello-2.12.1', 'x86_64-linux')).toBe(75);
    expect(history.lookup?.('app-1.0', 'x86_64-linux')).toBeUndefined();
    expect(history.learnedSpeeds).toEqual(new Map([['kana', 1.5], ['ruby', 0.75]]));
    expect(warnings).toEqual([]);
  });

  it('never creates a history file that does not exist, and --no-history ignores one that does', async () => {
    const missing = join(dir, 'missing.sqlite');
    expect((await planHistory(local, { historyFile: missing }, keys, () => undefined)).lookup).toBeUndefined();
    expect(existsSync(missing)).toBe(false);
    const file = join(dir, 'ignored.sqlite');
    await historyWithTwoHosts(file);
    expect((await planHistory(local, { historyFile: file, history: false }, keys, () => undefined)).lookup).toBeUndefined();
  });

  it('an unreadable history is reported and the plan goes on without it', async () => {
    const warnings: string[] = [];
    const history = await planHistory(local, { historyFile: dir }, keys, (m) => warnings.push(m));
    expect(history.lookup).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`build history at ${dir}.*going on without history`));
  });

  it('shows each estimate source, and learned speeds next to the configured speedFactor', () => {
    const withHistory = jobs.map((j, i) => (i === 0 ? { ...j, estimateSource: 'history' as const } : j));
    const report = input({ jobs: new Map(withHistory.map((j) => [j.id, j])), learnedSpeeds: new Map([['kana', 1.5]]) });
    const text = planToText(report, { color: false });
    expect(text).toMatch(/hello-2\.12\.1 .* \(history\)/);
    expect(text).toMatch(/app-1\.0 .* \(rules\)/);
    expect(text).toContain('estimates: 1 from history, 1 from rules, 0 defaults');
    expect(text).toMatch(/kana +\d+ jobs +1 slots +speed 2 \(learned 1\.50\)/);
    expect(text).toMatch(/ruby +\d+ jobs +2 slots +speed 1 {2}\d+% busy/);
    const json = planToJson(report) as { hosts: Array<{ host: string; learnedSpeed?: number }> };
    expect(json.hosts.find((h) => h.host === 'kana')?.learnedSpeed).toBe(1.5);
    expect(json.hosts.find((h) => h.host === 'ruby')).not.toHaveProperty('learnedSpeed');
  });
});

describe('files written whole', () => {
  it('plan --svg draws a lane per host with slots and a bar per job', async () => {
    const file = join(dir, 'plan.svg');
    await writePlanSvg(file, input());
    const svg = readFileSync(file, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('hello-2.12.1');
    expect(svg).toContain('data-host="ruby"');
    expect(svg).toContain('data-host="kana"');
    // local has no slots and no job: no lane.
    expect(svg).not.toContain('data-host="local"');
  });

  it('a failed write leaves neither the file nor a temporary one, and says what it tried', async () => {
    const target = join(dir, 'no-such-dir', 'out.html');
    await expect(writeFileAtomic(target, 'x', 'the report')).rejects.toThrow(OffloadError);
    await expect(writeFileAtomic(target, 'x', 'the report')).rejects.toThrow(`cannot write the report to ${target}`);
    await writeFileAtomic(join(dir, 'clean.txt'), 'whole', 'a file');
    expect(readFileSync(join(dir, 'clean.txt'), 'utf8')).toBe('whole');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('keeps the mode of the file it replaces, and creates new ones with the usual 0666 less umask', async () => {
    const target = join(dir, 'private.html');
    writeFileSync(target, 'old');
    chmodSync(target, 0o600);
    await writeFileAtomic(target, 'new', 'the report');
    expect(readFileSync(target, 'utf8')).toBe('new');
    expect(statSync(target).mode & 0o777).toBe(0o600);
    const fresh = join(dir, 'fresh.html');
    await writeFileAtomic(fresh, Buffer.from([0xff, 0x00]), 'the report');
    expect(statSync(fresh).mode & 0o777).toBe(0o666 & ~process.umask());
    expect(readFileSync(fresh)).toEqual(Buffer.from([0xff, 0x00]));
  });

  it('replaces a symlink at the target instead of writing through it', async () => {
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'untouched');
    const link = join(dir, 'link.html');
    symlinkSync(victim, link);
    await writeFileAtomic(link, 'report', 'the report');
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(lstatSync(link).isFile()).toBe(true);
  });
});
