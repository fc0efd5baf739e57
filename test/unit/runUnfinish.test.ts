import { describe, expect, it } from 'vitest';
import { OnlineScheduler } from '../../src/schedule/onlineScheduler.js';
import { testHost, testJob } from './scheduleFixtures.js';

/** OnlineScheduler.unfinish: the executor's way to rebuild a job whose only output copy was lost. */
const host = (id: string, maxJobs = 2) => testHost(id, { maxJobs });
const job = (id: string, deps: string[] = [], duration = 10) => testJob(id, duration, deps);
const ids = (starts: Array<{ jobId: string }>) => starts.map((s) => s.jobId).sort();

describe('un-finishing a job whose outputs were lost', () => {
  it('runs the producer again before a dependent that had not started', () => {
    const s = new OnlineScheduler([job('p'), job('gate', [], 50), job('c', ['p', 'gate'])], [host('ruby'), host('kana')]);
    expect(ids(s.next(0))).toEqual(['gate', 'p']);
    s.finished('p', 10);
    s.unfinish('p');
    expect(s.isComplete()).toBe(false);
    expect(ids(s.next(10))).toEqual(['p']);
    s.finished('gate', 50);
    expect(s.next(50)).toEqual([]);
    s.finished('p', 60);
    expect(ids(s.next(60))).toEqual(['c']);
    s.finished('c', 70);
    expect(s.isComplete()).toBe(true);
  });

  it('takes a ready dependent out of the queue until the producer is built again', () => {
    const s = new OnlineScheduler([job('p'), job('c', ['p'])], [host('ruby', 1)]);
    expect(ids(s.next(0))).toEqual(['p']);
    s.finished('p', 10);
    // c is ready now, but p's output is gone before c starts.
    s.unfinish('p');
    expect(ids(s.next(10))).toEqual(['p']);
    s.finished('p', 20);
    expect(ids(s.next(20))).toEqual(['c']);
  });

  it('blocks a running dependent that is requeued after losing its input, until the producer is done', () => {
    const s = new OnlineScheduler([job('p'), job('c', ['p'])], [host('ruby'), host('kana')]);
    s.next(0);
    s.finished('p', 10);
    expect(ids(s.next(10))).toEqual(['c']);
    s.unfinish('p');
    s.requeue('c');
    expect(ids(s.next(11))).toEqual(['p']);
    s.finished('p', 21);
    expect(ids(s.next(21))).toEqual(['c']);
  });

  it('rebuilds a chain from its first lost link: a job whose dep is un-finished too waits for it', () => {
    const s = new OnlineScheduler([job('a'), job('b', ['a']), job('c', ['b'])], [host('ruby')]);
    s.next(0);
    s.finished('a', 10);
    s.next(10);
    s.finished('b', 20);
    s.unfinish('b');
    s.unfinish('a');
    expect(ids(s.next(20))).toEqual(['a']);
    s.finished('a', 30);
    expect(ids(s.next(30))).toEqual(['b']);
    s.finished('b', 40);
    expect(ids(s.next(40))).toEqual(['c']);
  });

  it('refuses to un-finish a job that has not finished', () => {
    const s = new OnlineScheduler([job('p')], [host('ruby')]);
    expect(() => s.unfinish('p')).toThrow(/cannot unfinish p/);
    s.next(0);
    expect(() => s.unfinish('p')).toThrow(/cannot unfinish p/);
  });
});
