import { describe, expect, it } from 'vitest';
import { firstWave, firstWaveHosts } from '../../src/schedule/firstWaveHosts.js';
import { testHost, testJob } from './scheduleFixtures.js';

const builders = [testHost('local', { maxJobs: 0 }), testHost('aquamarine', { maxJobs: 2 }), testHost('ruby', { maxJobs: 2 })];

describe('firstWaveHosts', () => {
  it('names one builder for one job: the other is not made ready', () => {
    const hosts = firstWaveHosts([testJob('only', 60)], builders);
    expect(hosts).toHaveLength(1);
  });

  it('names every builder the first jobs spread over', () => {
    const jobs = ['a', 'b', 'c', 'd'].map((id) => testJob(id, 60));
    expect(firstWaveHosts(jobs, builders).sort()).toEqual(['aquamarine', 'ruby']);
  });

  it('leaves out a builder whose first job starts only after another job has ended', () => {
    // A chain: its second job cannot start before the first has ended, wherever it goes.
    const jobs = [testJob('first', 60), testJob('second', 60, ['first']), testJob('third', 60, ['second'])];
    expect(firstWaveHosts(jobs, builders)).toHaveLength(1);
  });

  it('leaves out a builder the first jobs do not fit', () => {
    const arm = testHost('arm', { systems: ['aarch64-linux'], maxJobs: 4 });
    expect(firstWaveHosts([testJob('x', 60), testJob('y', 60)], [builders[0]!, builders[1]!, arm])).toEqual(['aquamarine']);
  });

  it('names no builder when the first jobs run here', () => {
    expect(firstWaveHosts([testJob('x', 60)], [testHost('local', { maxJobs: 4, speedFactor: 4 }), builders[1]!])).toEqual([]);
  });

  it('names every builder that fits a job, without planning, above a hundred jobs', () => {
    const chain = Array.from({ length: 101 }, (_, i) => testJob(`j${i}`, 1, i === 0 ? [] : [`j${i - 1}`]));
    expect(firstWaveHosts(chain, builders)).toEqual(['aquamarine', 'ruby']);
  });

  it('names nothing for no jobs', () => {
    expect(firstWaveHosts([], builders)).toEqual([]);
  });
});

describe('firstWave', () => {
  it('is the hosts whose jobs start before the first job ends', () => {
    const assignments = [
      { jobId: 'a', host: 'x', start: 0, end: 10 },
      { jobId: 'b', host: 'y', start: 5, end: 20 },
      { jobId: 'c', host: 'z', start: 10, end: 30 },
    ];
    expect([...firstWave({ assignments })].sort()).toEqual(['x', 'y']);
  });

  it('takes a plan of more jobs than a call takes arguments', () => {
    const assignments = Array.from({ length: 200_000 }, (_, i) => ({ jobId: `j${i}`, host: i === 0 ? 'x' : 'y', start: i, end: i + 1 }));
    expect([...firstWave({ assignments })]).toEqual(['x']);
  });

  it('is empty for a plan with no assignments', () => {
    expect(firstWave({ assignments: [] }).size).toBe(0);
  });
});
