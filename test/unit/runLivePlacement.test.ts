import { describe, expect, it } from 'vitest';
import { livePlacement } from '../../src/run/livePlacement.js';
import type { Host, Plan } from '../../src/schedule/types.js';

const host = (id: string, isLocal = false): Host => ({ id, systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], maxJobs: 2, speedFactor: 1, isLocal });
const hosts = [host('local', true), host('aquamarine'), host('ruby'), host('kana')];
const plan = (p: Partial<Plan>): Plan => ({ makespan: 1, assignments: [], criticalPath: [], policy: 'offload', candidates: {}, lowerBound: 1, hosts: [], ...p });

describe('livePlacement', () => {
  it('connects to the planned builders and keeps the others in reserve', () => {
    expect(livePlacement(plan({ hosts: ['local', 'aquamarine', 'ruby'] }), hosts)).toEqual({
      planned: ['aquamarine', 'ruby'],
      reserves: ['kana'],
      regularHosts: ['local', 'aquamarine', 'ruby', 'kana'],
    });
  });

  it('follows a single-host baseline: only that host takes regular jobs, local keeps builtins', () => {
    const p = livePlacement(plan({ policy: 'single-host ruby', hosts: ['local', 'ruby'], regularHosts: ['ruby'] }), hosts);
    expect(p.planned).toEqual(['ruby']);
    expect(p.reserves).toEqual(['aquamarine', 'kana']);
    expect(p.regularHosts).toEqual(['ruby', 'aquamarine', 'kana']);
  });
});
