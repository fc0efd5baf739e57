import { describe, expect, it } from 'vitest';
import { NoHostFitsError } from '../../src/schedule/fit.js';
import { simulateNixLike } from '../../bench/nixLikePolicy.js';
import { OnlineScheduler } from '../../src/schedule/onlineScheduler.js';
import { liveScheduler } from '../../src/run/livePlacement.js';
import { planBuild, schedulerOptionsForPlan } from '../../src/schedule/planBuild.js';
import { simulate } from '../../src/schedule/simulate.js';
import { testHost, testJob } from './scheduleFixtures.js';

const host = testHost;
const job = testJob;
const byJob = (plan: { assignments: Array<{ jobId: string; host: string; start: number; end: number }> }) =>
  new Map(plan.assignments.map((a) => [a.jobId, a]));

describe('hand-made schedules', () => {
  it('starts the long chain before the many short leaves', () => {
    // Leaves come first in input order, so any order but critical-path-first would start them first.
    const leaves = Array.from({ length: 20 }, (_, i) => job(`leaf${i}`, 10));
    const chain = Array.from({ length: 5 }, (_, i) => job(`chain${i}`, 100, i > 0 ? [`chain${i - 1}`] : []));
    const jobs = [...leaves, ...chain];
    const hosts = [host('local', { maxJobs: 0 }), host('ruby', { maxJobs: 2 })];
    const plan = planBuild(jobs, hosts);
    expect(byJob(plan).get('chain0')!.start).toBe(0);
    expect(plan.makespan).toBe(500);
    expect(plan.criticalPath).toEqual(chain.map((j) => j.id));
    // Nix's discovery order starts the leaves first, so the chain ends 100 s later.
    expect(simulateNixLike(jobs, hosts).makespan).toBe(600);
  });

  it('uses the local machine when it is faster than the remotes', () => {
    const jobs = Array.from({ length: 6 }, (_, i) => job(`j${i}`, 100, i > 0 ? [`j${i - 1}`] : []));
    const hosts = [host('local', { maxJobs: 2, speedFactor: 4 }), host('ruby', { maxJobs: 2 })];
    const plan = planBuild(jobs, hosts);
    expect(plan.assignments.every((a) => a.host === 'local')).toBe(true);
    expect(plan.makespan).toBe(150);
    expect(plan.hosts).toEqual(['local']);
    // Nix offloads first, so the chain crawls on the slow remote.
    expect(simulateNixLike(jobs, hosts).makespan).toBe(600);
  });

  it('gives the long job to the speedFactor 4 host', () => {
    const jobs = [job('short1', 10), job('short2', 10), job('long', 1000), job('short3', 10)];
    const hosts = [host('local', { maxJobs: 0 }), host('slow', { maxJobs: 2 }), host('fast', { speedFactor: 4 })];
    const plan = planBuild(jobs, hosts);
    expect(byJob(plan).get('long')!.host).toBe('fast');
    expect(plan.makespan).toBe(250);
  });

  it('waits for a fast host that frees soon instead of starting a critical job on a slow one', () => {
    const jobs = [job('busy', 40), job('critical', 400)];
    const hosts = [host('slow'), host('fast', { speedFactor: 4 })];
    const s = new OnlineScheduler(jobs, hosts);
    s.started('busy', 'fast', 0); // ends at 10 on the fast host
    expect(s.next(0)).toEqual([]);
    s.finished('busy', 10);
    expect(s.next(10)).toEqual([{ jobId: 'critical', host: 'fast' }]);
  });

  it('lets a short job use the slot while the critical job waits', () => {
    const jobs = [job('busy', 40), job('critical', 400, [], {}), job('tiny', 5)];
    const hosts = [host('slow'), host('fast', { speedFactor: 4 })];
    const s = new OnlineScheduler(jobs, hosts);
    s.started('busy', 'fast', 0);
    expect(s.next(0)).toEqual([{ jobId: 'tiny', host: 'slow' }]);
  });

  it('runs builtin jobs locally even with local max-jobs 0, and preferLocalBuild jobs locally when it has room', () => {
    const jobs = [
      job('src', 5, [], { isBuiltin: true, system: 'builtin' }),
      job('build', 50, ['src']),
      job('wrap', 1, ['build'], { preferLocalBuild: true }),
    ];
    const p0 = planBuild(jobs, [host('local', { maxJobs: 0 }), host('ruby', { speedFactor: 2 })]);
    expect(byJob(p0).get('src')!.host).toBe('local');
    expect(byJob(p0).get('wrap')!.host).toBe('ruby');
    const p1 = simulate(jobs, [host('local', { maxJobs: 1 }), host('ruby', { speedFactor: 2 })]);
    expect(byJob(p1).get('wrap')!.host).toBe('local');
  });

  it('throws NoHostFitsError before planning', () => {
    expect(() => planBuild([job('arm', 1, [], { system: 'aarch64-linux' })], [host('local')])).toThrow(NoHostFitsError);
  });

  it('plan names the winner and every candidate; the live scheduler follows a baseline winner', () => {
    // One fast remote and two slow ones: the single-host baseline can win only if it is at least as good.
    const jobs = Array.from({ length: 8 }, (_, i) => job(`j${i}`, 100, i > 0 ? [`j${i - 1}`] : []));
    const hosts = [host('local', { maxJobs: 0 }), host('big', { speedFactor: 3 }), host('small', { maxJobs: 3 })];
    const plan = planBuild(jobs, hosts);
    expect(Object.keys(plan.candidates)).toEqual(['offload', 'offload+lookahead', 'single-host big']);
    expect(plan.makespan).toBe(Math.min(...Object.values(plan.candidates)));
    const s = liveScheduler(plan, jobs, hosts);
    expect(s.next(0)).toEqual([{ jobId: 'j0', host: 'big' }]);
    expect(schedulerOptionsForPlan({ ...plan, policy: 'offload+lookahead' }).lookahead).toBe(true);
  });
});

describe('OnlineScheduler events', () => {
  const jobs = [job('a', 10), job('b', 10, ['a']), job('c', 10, ['b']), job('d', 10)];
  const hosts = [host('ruby', { maxJobs: 2 })];

  it('failed() makes dependents unrunnable and reports them', () => {
    const s = new OnlineScheduler(jobs, hosts);
    expect(s.next(0).map((x) => x.jobId).sort()).toEqual(['a', 'd']);
    expect(s.failed('a')).toEqual(['b', 'c']);
    s.finished('d', 10);
    expect(s.next(10)).toEqual([]);
    expect(s.isComplete()).toBe(true);
  });

  it('requeue() puts a running job back; an unavailable host gets nothing new', () => {
    const s = new OnlineScheduler(jobs, [host('ruby'), host('kana')]);
    const first = s.next(0);
    expect(first).toHaveLength(2);
    s.setHostAvailable('ruby', false);
    const onRuby = first.find((x) => x.host === 'ruby')!;
    s.requeue(onRuby.jobId);
    expect(s.hostSlots('ruby')).toEqual({ limit: 1, builtinLimit: 0, running: 0, available: false });
    expect(s.next(1)).toEqual([]);
    const onKana = first.find((x) => x.host === 'kana')!;
    s.finished(onKana.jobId, 10);
    expect(s.next(10).every((x) => x.host === 'kana')).toBe(true);
  });

  it('estimates the remaining time from the critical path and the work left', () => {
    const s = new OnlineScheduler(jobs, hosts);
    expect(s.estimatedRemaining(0)).toBe(30);
    s.next(0);
    s.finished('a', 10);
    s.finished('d', 10);
    expect(s.estimatedRemaining(10)).toBe(20);
  });

  it('rejects events that do not match the job state', () => {
    const s = new OnlineScheduler(jobs, hosts);
    expect(() => s.finished('a', 0)).toThrow(/not running/);
    expect(() => s.started('b', 'ruby', 0)).toThrow(/not ready/);
    expect(() => s.next(0) && s.started('a', 'nowhere', 0)).toThrow(/unknown host/);
  });
});
