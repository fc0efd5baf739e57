import { describe, expect, it } from 'vitest';
import { placementReason } from '../../src/schedule/placementReason.js';
import type { Host, Job, Plan } from '../../src/schedule/types.js';
import { testHost, testJob } from './scheduleFixtures.js';

const host = (id: string, over: Partial<Host> = {}) => testHost(id, { maxJobs: 2, ...over });
const job = (over: Partial<Job> = {}) => testJob('/nix/store/00000000000000000000000000000000-x.drv', 10, [], { name: 'x', ...over });
const plan = (over: Partial<Plan> = {}): Plan => ({
  makespan: 10,
  assignments: [],
  criticalPath: [],
  policy: 'offload',
  candidates: {},
  lowerBound: 10,
  hosts: ['local', 'ruby', 'kana'],
  ...over,
});
const hosts = [host('local'), host('ruby'), host('kana', { systems: ['x86_64-linux', 'aarch64-linux'], supportedFeatures: ['kvm'], speedFactor: 4 })];

describe('placementReason', () => {
  it('names the only fitting host and what made it the only one', () => {
    expect(placementReason(job({ system: 'aarch64-linux', requiredFeatures: ['kvm'] }), 'kana', hosts, plan(), false)).toBe('only kana fits (aarch64-linux with {kvm})');
  });

  it('says builtin derivations run locally', () => {
    expect(placementReason(job({ system: 'builtin', isBuiltin: true }), 'local', hosts, plan(), false)).toBe('builtin: runs on the local machine');
  });

  it('marks critical-path placements as earliest finish', () => {
    expect(placementReason(job(), 'kana', hosts, plan(), true)).toBe('critical path: earliest finish of 3 fitting hosts');
  });

  it('explains work left on a slower host while a faster one exists', () => {
    expect(placementReason(job(), 'ruby', hosts, plan(), false)).toMatch(/^has slack/);
  });

  it('names a trivial baseline that beat the list schedule', () => {
    expect(placementReason(job(), 'kana', hosts, plan({ policy: 'single-host kana', hosts: ['local', 'kana'], regularHosts: ['kana'] }), false)).toBe(
      'single-host kana beat the list schedule, so only kana builds',
    );
  });
});
