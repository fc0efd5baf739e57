import { describe, expect, it } from 'vitest';
import { backoff, HostHealth } from '../../src/run/hostHealth.js';

const options = { failureThreshold: 2, backoffSeconds: 10, maxBackoffSeconds: 60 };

describe('host health over a run', () => {
  it('keeps a host after one dropped connection and takes it out after the second in a row', () => {
    const health = new HostHealth(options);
    expect(health.failure('ruby', 'lost', 'reset', 0)).toEqual({ action: 'keep', failures: 1 });
    expect(health.isOut('ruby', 1)).toBe(false);
    expect(health.failure('ruby', 'lost', 'reset again', 1)).toEqual({ action: 'backoff', failures: 2, seconds: 10, until: 11 });
    expect(health.isOut('ruby', 10.9)).toBe(true);
    expect(health.isOut('ruby', 11)).toBe(false);
  });

  it('takes a host out at once when it cannot be reached, and doubles the back-off each time it fails again', () => {
    const health = new HostHealth(options);
    expect(health.failure('kana', 'unreachable', 'refused', 0)).toMatchObject({ action: 'backoff', seconds: 10 });
    expect(health.failure('kana', 'unreachable', 'refused', 10)).toMatchObject({ action: 'backoff', seconds: 20, until: 30 });
    expect(health.failure('kana', 'lost', 'reset', 30)).toMatchObject({ action: 'backoff', seconds: 40 });
    expect(health.failure('kana', 'unreachable', 'refused', 70)).toMatchObject({ action: 'backoff', seconds: 60 });
  });

  it('forgets the failures of a host that built something', () => {
    const health = new HostHealth(options);
    health.failure('kana', 'unreachable', 'refused', 0);
    health.success('kana');
    expect(health.failure('kana', 'lost', 'reset', 20)).toEqual({ action: 'keep', failures: 1 });
    expect(health.failure('kana', 'lost', 'reset', 21)).toMatchObject({ action: 'backoff', seconds: 10 });
  });

  it('retires a host that refused us (host key, login) for the rest of the run', () => {
    const health = new HostHealth(options);
    expect(health.failure('aquamarine', 'refused', 'host key of aquamarine does not match', 0)).toEqual({ action: 'retire' });
    expect(health.isOut('aquamarine', 1e9)).toBe(true);
    health.success('aquamarine');
    expect(health.isOut('aquamarine', 1e9)).toBe(true);
    expect(health.failure('aquamarine', 'lost', 'x', 5)).toEqual({ action: 'retire' });
  });

  it('reports every host that failed, how often it was taken out and whether it is still out', () => {
    const health = new HostHealth(options);
    health.failure('ruby', 'lost', 'reset', 0);
    health.failure('kana', 'unreachable', 'refused', 0);
    health.failure('aquamarine', 'refused', 'bad key', 0);
    expect(health.troubles(5)).toEqual([
      { host: 'ruby', failures: 1, timesOut: 0, reason: 'reset', outAtEnd: false, retired: false },
      { host: 'kana', failures: 1, timesOut: 1, reason: 'refused', outAtEnd: true, retired: false },
      { host: 'aquamarine', failures: 1, timesOut: 1, reason: 'bad key', outAtEnd: true, retired: true },
    ]);
    expect(health.troubles(10).find((t) => t.host === 'kana')?.outAtEnd).toBe(false);
  });

  it('computes interval · 2^(n−1), capped', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoff(options, n))).toEqual([10, 20, 40, 60, 60]);
  });
});
