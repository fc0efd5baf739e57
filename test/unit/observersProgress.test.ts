import { describe, expect, it } from 'vitest';
import { eventLine, shortSeconds } from '../../src/report/eventLines.js';
import { eventJsonLine, resultJsonLine } from '../../src/report/eventStream.js';
import { ProgressTracker } from '../../src/report/progressTracker.js';
import { APP, HELLO, hosts, jobs, result, script } from './observersFixtures.js';

describe('eventLine', () => {
  it('narrates each kind of event in one line with the run time', () => {
    const est = (jobId: string, host: string) => (jobId === HELLO && host === 'ruby' ? 90 : undefined);
    expect(eventLine({ type: 'jobStarted', time: 12.34, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', attempt: 1 }, est)).toBe('[12.3s] ruby: started hello-2.12.1 (est 1m30s)');
    expect(eventLine({ type: 'jobStarted', time: 1, jobId: APP, name: 'app-1.0', host: 'kana', attempt: 2 }, est)).toBe('[1.0s] kana: started app-1.0 (attempt 2)');
    expect(eventLine({ type: 'jobFinished', time: 54.3, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', status: 'built', seconds: 42 })).toBe('[54.3s] ruby: hello-2.12.1 built in 42s');
    expect(eventLine({ type: 'jobFinished', time: 3, jobId: HELLO, name: 'h', host: 'ruby', status: 'failed', seconds: 1, error: 'exit 3' })).toBe('[3.0s] ruby: h failed: exit 3');
    expect(eventLine({ type: 'jobFinished', time: 3, jobId: HELLO, name: 'h', host: 'ruby', status: 'requeued', seconds: 1, error: 'connection lost' })).toBe('[3.0s] ruby: h goes back to the queue: connection lost');
    expect(eventLine({ type: 'jobFinished', time: 3, jobId: HELLO, name: 'h', host: 'ruby', status: 'interrupted', seconds: 2.5 })).toBe('[3.0s] ruby: h interrupted after 2.5s');
    expect(eventLine({ type: 'jobSkipped', time: 3, jobId: APP, name: 'app-1.0', reason: `needs ${HELLO}, which failed` })).toBe(`[3.0s] app-1.0 skipped: needs ${HELLO}, which failed`);
    expect(eventLine({ type: 'hostDown', time: 4, host: 'kana', reason: 'timed out' })).toBe('[4.0s] kana: down: timed out');
    expect(eventLine({ type: 'hostBack', time: 34, host: 'kana' })).toBe('[34.0s] kana: back in rotation');
    expect(eventLine({ type: 'buildLog', time: 4, jobId: APP, host: 'kana', line: 'x' })).toBeUndefined();
  });

  it('keeps a decimal for short builds only', () => {
    expect(shortSeconds(1.64)).toBe('1.6s');
    expect(shortSeconds(125)).toBe('2m05s');
  });
});

describe('NDJSON events', () => {
  it('writes each event as one JSON line with millisecond times, and the result as type "result"', () => {
    const line = eventJsonLine({ type: 'jobFinished', time: 1.23456, jobId: HELLO, name: 'h', host: 'ruby', status: 'built', seconds: 0.00049 });
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trim().includes('\n')).toBe(false);
    expect(JSON.parse(line)).toEqual({ type: 'jobFinished', time: 1.235, jobId: HELLO, name: 'h', host: 'ruby', status: 'built', seconds: 0 });
    const last = JSON.parse(resultJsonLine(result)) as { type: string; jobs: unknown[]; makespan: number };
    expect(last.type).toBe('result');
    expect(last.jobs).toHaveLength(2);
    expect(last.makespan).toBe(43.4);
  });

  it('escapes newlines in log lines so one event stays one line', () => {
    const line = eventJsonLine({ type: 'buildLog', time: 1, jobId: HELLO, host: 'ruby', line: 'a\nb' });
    expect(line.split('\n')).toHaveLength(2);
  });
});

describe('ProgressTracker', () => {
  it('counts jobs and shows what each host runs with elapsed and estimate', () => {
    const t = new ProgressTracker(jobs, hosts);
    t.apply(script[0]!.event!);
    const s = t.state(10);
    expect(s.counts).toEqual({ done: 0, running: 1, queued: 1, failed: 0, skipped: 0 });
    expect(s.hosts.map((h) => h.id)).toEqual(['ruby', 'kana']);
    expect(s.hosts[0]!.running).toEqual([{ name: 'hello-2.12.1', elapsed: 9.9, estimate: 90 }]);
  });

  it('ETA is the remaining critical path: what is left of running jobs, then their dependents on the planned host', () => {
    const t = new ProgressTracker(jobs, hosts, new Map([[APP, 'ruby']]));
    expect(t.eta(0)).toBe(90 / 2 + 30);
    t.apply(script[0]!.event!);
    // hello: 90 s on ruby, started at 0.1; at 40.1, 50 s are left; then app 30 s on ruby.
    expect(t.eta(40.1)).toBeCloseTo(80, 6);
    t.apply({ type: 'jobFinished', time: 90, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', status: 'built', seconds: 90 });
    t.apply({ type: 'jobStarted', time: 90, jobId: APP, name: 'app-1.0', host: 'kana', attempt: 1 });
    expect(t.eta(95)).toBeCloseTo(10, 6);
    expect(t.eta(200)).toBe(0);
    t.apply({ type: 'jobFinished', time: 200, jobId: APP, name: 'app-1.0', host: 'kana', status: 'built', seconds: 110 });
    expect(t.eta(200)).toBeUndefined();
    expect(t.state(200).counts.done).toBe(2);
  });

  it('ETA is at least the remaining work spread over the slots in rotation', () => {
    const wide = Array.from({ length: 6 }, (_, i) => ({ id: `j${i}`, name: `w${i}`, duration: 60, deps: [] }));
    const t = new ProgressTracker(wide, [{ id: 'ruby', maxJobs: 2, speedFactor: 1 }]);
    expect(t.eta(0)).toBe(180);
    t.apply({ type: 'hostDown', time: 0, host: 'ruby', reason: 'x' });
    expect(t.state(0).hosts[0]!.down).toBe('x');
    t.apply({ type: 'hostBack', time: 1, host: 'ruby' });
    expect(t.state(1).hosts[0]!.down).toBeUndefined();
  });

  it('a requeued job is queued again; failed and skipped jobs leave the ETA', () => {
    const t = new ProgressTracker(jobs, hosts);
    t.apply(script[0]!.event!);
    t.apply({ type: 'jobFinished', time: 5, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', status: 'requeued', seconds: 5 });
    expect(t.state(5).counts).toMatchObject({ running: 0, queued: 2 });
    t.apply({ type: 'jobFinished', time: 6, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', status: 'failed', seconds: 1 });
    t.apply({ type: 'jobSkipped', time: 6, jobId: APP, name: 'app-1.0', reason: 'dep failed' });
    expect(t.state(6).counts).toMatchObject({ failed: 1, skipped: 1, queued: 0 });
    expect(t.eta(6)).toBeUndefined();
  });
});
