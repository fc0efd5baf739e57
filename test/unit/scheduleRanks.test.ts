import { describe, expect, it } from 'vitest';
import { JobGraphError } from '../../src/schedule/jobGraph.js';
import { criticalPath, lowerBound, upwardRank } from '../../src/schedule/ranks.js';
import { testHost, testJob } from './scheduleFixtures.js';

const host = testHost;
const job = testJob;

describe('upward rank and critical path', () => {
  // a → b → d, a → c → d ; c is longer
  const jobs = [job('d', 10, ['b', 'c']), job('b', 5, ['a']), job('c', 20, ['a']), job('a', 1)];
  const hosts = [host('ruby', { speedFactor: 2 }), host('kana')];

  it('uses the fastest fitting speed', () => {
    const rank = upwardRank(jobs, hosts);
    expect(rank.get('d')).toBe(5);
    expect(rank.get('c')).toBe(15);
    expect(rank.get('b')).toBe(7.5);
    expect(rank.get('a')).toBe(15.5);
  });
  it('follows the highest rank from source to sink', () => {
    expect(criticalPath(jobs, hosts)).toEqual(['a', 'c', 'd']);
  });
  it('speed counts only on hosts that fit the job', () => {
    const kvm = [job('x', 100, [], { requiredFeatures: ['kvm'] })];
    expect(upwardRank(kvm, [host('fast', { speedFactor: 4 }), host('kvm', { supportedFeatures: ['kvm'] })]).get('x')).toBe(100);
  });
  it('rejects unknown deps and cycles', () => {
    expect(() => upwardRank([job('a', 1, ['zz'])], hosts)).toThrow(JobGraphError);
    expect(() => upwardRank([job('a', 1, ['b']), job('b', 1, ['a'])], hosts)).toThrow(/cycle/);
  });
});

describe('lowerBound', () => {
  it('is the critical path when work is small', () => {
    const jobs = [job('a', 100), job('b', 100, ['a'])];
    expect(lowerBound(jobs, [host('r', { maxJobs: 4, speedFactor: 2 })])).toBe(100);
  });
  it('is work over Σ slots·speedFactor when work dominates', () => {
    const jobs = Array.from({ length: 10 }, (_, i) => job(`j${i}`, 100));
    // 1000 reference seconds over 2·1 + 1·3 = 5 per second
    expect(lowerBound(jobs, [host('a', { maxJobs: 2 }), host('b', { speedFactor: 3 })])).toBe(200);
  });
  it('counts work that only some hosts can do against those hosts alone', () => {
    const jobs = [...Array.from({ length: 4 }, (_, i) => job(`k${i}`, 100, [], { requiredFeatures: ['kvm'] })), job('x', 1)];
    const hosts = [host('kvm', { supportedFeatures: ['kvm'], maxJobs: 2 }), host('plain', { maxJobs: 8 })];
    expect(lowerBound(jobs, hosts)).toBe(200);
  });
  it('ignores hosts no job can use', () => {
    const jobs = Array.from({ length: 4 }, (_, i) => job(`j${i}`, 100));
    expect(lowerBound(jobs, [host('a'), host('arm', { systems: ['aarch64-linux'], maxJobs: 100 })])).toBe(400);
  });
});
