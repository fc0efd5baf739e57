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

describe('fetches in the event lines, the NDJSON events and the live view', () => {
  const CACHE = 'https://cache.example.org';
  const ZLIB = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-zlib-1.3.drv';
  const fetchJob = { ...jobs[0]!, id: ZLIB, name: 'zlib-1.3', duration: 2, action: 'fetch' as const, transfer: { bytes: 2048, from: CACHE, paths: [] } };
  const lane = { ...hosts[0]!, id: 'caches', maxJobs: 16, isLocal: false, transferLane: true };

  it('narrates a fetch here, on a builder, refused by a builder, and one that fell back', () => {
    expect(eventLine({ type: 'jobStarted', time: 1, jobId: ZLIB, name: 'zlib-1.3', host: 'caches', attempt: 1, action: 'fetch' })).toBe('[1.0s] caches: fetching zlib-1.3');
    expect(eventLine({ type: 'jobFinished', time: 2, jobId: ZLIB, name: 'zlib-1.3', host: 'ruby', status: 'fetched', seconds: 1, action: 'fetch', bytes: 2048, from: CACHE })).toBe(
      `[2.0s] ruby: zlib-1.3 fetched (2.00 KiB) from ${CACHE} in 1.0s`,
    );
    expect(eventLine({ type: 'jobFinished', time: 2, jobId: ZLIB, name: 'zlib-1.3', host: 'ruby', status: 'requeued', seconds: 1, action: 'fetch', error: 'ruby could not substitute it' })).toBe(
      '[2.0s] ruby: zlib-1.3 could not be fetched there (ruby could not substitute it); fetching it here',
    );
    expect(eventLine({ type: 'jobFinished', time: 2, jobId: ZLIB, name: 'zlib-1.3', host: 'caches', status: 'fell-back', seconds: 1, action: 'fetch', from: CACHE })).toBe(
      `[2.0s] caches: zlib-1.3 could not be fetched from ${CACHE}; building it instead`,
    );
  });

  it('keeps what moved and from where in the NDJSON event', () => {
    const event = { type: 'jobFinished' as const, time: 2, jobId: ZLIB, name: 'zlib-1.3', host: 'ruby', status: 'fetched' as const, seconds: 1, action: 'fetch' as const, bytes: 2048, from: CACHE };
    expect(JSON.parse(eventJsonLine(event))).toEqual(event);
  });

  it('shows a running fetch on the lane or the builder making it, and counts it done', () => {
    const t = new ProgressTracker([fetchJob, { ...jobs[1]!, deps: [ZLIB] }], [...hosts, lane]);
    t.apply({ type: 'jobStarted', time: 0, jobId: ZLIB, name: 'zlib-1.3', host: 'caches', attempt: 1, action: 'fetch' });
    expect(t.state(0.5).hosts.find((h) => h.id === 'caches')!.running).toEqual([{ name: 'zlib-1.3', elapsed: 0.5, estimate: 2 }]);
    t.apply({ type: 'jobFinished', time: 1, jobId: ZLIB, name: 'zlib-1.3', host: 'caches', status: 'requeued', seconds: 1, action: 'fetch' });
    t.apply({ type: 'jobStarted', time: 1, jobId: ZLIB, name: 'zlib-1.3', host: 'ruby', attempt: 2, action: 'fetch' });
    expect(t.state(1.5).hosts.find((h) => h.id === 'ruby')!.running.map((r) => r.name)).toEqual(['zlib-1.3']);
    t.apply({ type: 'jobFinished', time: 2, jobId: ZLIB, name: 'zlib-1.3', host: 'ruby', status: 'fetched', seconds: 1, action: 'fetch', bytes: 2048, from: CACHE });
    expect(t.state(2).counts).toMatchObject({ done: 1, running: 0, queued: 1 });
  });
});
