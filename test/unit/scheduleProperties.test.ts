import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fits, rejectionReason, slotLimit } from '../../src/schedule/fit.js';
import { simulateNixLike } from '../../bench/nixLikePolicy.js';
import { OnlineScheduler } from '../../src/schedule/onlineScheduler.js';
import { planBuild } from '../../src/schedule/planBuild.js';
import { lowerBound } from '../../src/schedule/ranks.js';
import { simulate } from '../../src/schedule/simulate.js';
import type { Assignment, Host, Job } from '../../src/schedule/types.js';

const SYSTEMS = ['x86_64-linux', 'aarch64-linux'];
const FEATURES = ['kvm', 'big-parallel'];
const EPS = 1e-6;

const hostArb = (id: string, isLocal: boolean) =>
  fc.record({
    systems: fc.subarray(SYSTEMS, { minLength: 1 }),
    supportedFeatures: fc.subarray(FEATURES),
    mandatoryFeatures: fc.oneof({ weight: 4, arbitrary: fc.constant([] as string[]) }, { weight: 1, arbitrary: fc.subarray(FEATURES, { maxLength: 1 }) }),
    maxJobs: isLocal ? fc.integer({ min: 0, max: 3 }) : fc.integer({ min: 0, max: 4 }),
    speedFactor: fc.double({ min: 0.5, max: 4, noNaN: true }),
  }).map((h): Host => ({ id, isLocal, ...h }));

const clusterArb = fc
  .integer({ min: 0, max: 4 })
  .chain((remotes) => fc.tuple(hostArb('local', true), ...Array.from({ length: remotes }, (_, i) => hostArb(`h${i}`, false))))
  .map((hs) => hs as Host[]);

interface JobSeed {
  target: number;
  builtin: boolean;
  preferLocal: boolean;
  duration: number;
  depPicks: number[];
  featurePick: number;
}

const jobSeedArb = fc.record({
  target: fc.nat(),
  builtin: fc.boolean(),
  preferLocal: fc.boolean(),
  duration: fc.double({ min: 0.5, max: 500, noNaN: true }),
  depPicks: fc.array(fc.nat(), { maxLength: 4 }),
  featurePick: fc.nat(),
});

/** Jobs whose needs are taken from a host that has slots, so every job fits somewhere. */
function makeJobs(seeds: JobSeed[], hosts: Host[]): Job[] {
  const withSlots = hosts.filter((h) => h.maxJobs > 0);
  return seeds.map((s, i): Job => {
    const deps = i === 0 ? [] : [...new Set(s.depPicks.map((d) => `j${d % i}`))];
    const t = withSlots[s.target % Math.max(1, withSlots.length)];
    if (s.builtin || !t) {
      return { id: `j${i}`, name: `j${i}`, system: 'builtin', requiredFeatures: [], duration: 5, estimateSource: 'rules', deps, preferLocalBuild: true, isBuiltin: true };
    }
    const offered = [...new Set([...t.supportedFeatures, ...t.mandatoryFeatures])];
    const extra = offered.filter((_, k) => (s.featurePick >> k) & 1);
    return {
      id: `j${i}`,
      name: `j${i}`,
      system: t.systems[s.featurePick % t.systems.length]!,
      requiredFeatures: [...new Set([...t.mandatoryFeatures, ...extra])],
      duration: s.duration,
      estimateSource: 'rules',
      deps,
      preferLocalBuild: s.preferLocal,
      isBuiltin: false,
    };
  });
}

const caseArb = fc
  .tuple(clusterArb, fc.array(jobSeedArb, { minLength: 1, maxLength: 60 }))
  .map(([hosts, seeds]) => ({ hosts, jobs: makeJobs(seeds, hosts) }));

/** The invariants every schedule must satisfy, whatever the policy. */
function checkSchedule(jobs: Job[], hosts: Host[], assignments: Assignment[]): void {
  const byId = new Map(assignments.map((a) => [a.jobId, a]));
  expect(assignments).toHaveLength(jobs.length);
  expect(byId.size).toBe(jobs.length);
  const hostById = new Map(hosts.map((h) => [h.id, h]));
  for (const job of jobs) {
    const a = byId.get(job.id)!;
    const h = hostById.get(a.host)!;
    expect(rejectionReason(h, job)).toBeNull();
    expect(a.end - a.start).toBeCloseTo(job.duration / h.speedFactor, 6);
    for (const d of job.deps) expect(a.start).toBeGreaterThanOrEqual(byId.get(d)!.end - EPS);
  }
  for (const h of hosts) {
    // Sweep: at no instant more jobs than slots (regular jobs never beyond maxJobs).
    const isBuiltin = new Map(jobs.map((j) => [j.id, j.isBuiltin]));
    const events = assignments
      .filter((a) => a.host === h.id && a.end > a.start)
      .flatMap((a) => [
        { t: a.start, d: 1, b: isBuiltin.get(a.jobId)! },
        { t: a.end, d: -1, b: isBuiltin.get(a.jobId)! },
      ])
      .sort((x, y) => x.t - y.t || x.d - y.d);
    let all = 0;
    let regular = 0;
    for (const e of events) {
      all += e.d;
      if (!e.b) regular += e.d;
      expect(all).toBeLessThanOrEqual(Math.max(slotLimit(h, false), slotLimit(h, true)));
      expect(regular).toBeLessThanOrEqual(slotLimit(h, false));
    }
  }
}

describe('schedules on random DAGs and clusters', () => {
  it('planBuild: fitting hosts, slot limits, deps, ≥ lower bound, ≤ every baseline', () => {
    fc.assert(
      fc.property(caseArb, ({ jobs, hosts }) => {
        const plan = planBuild(jobs, hosts);
        checkSchedule(jobs, hosts, plan.assignments);
        expect(plan.makespan).toBeGreaterThanOrEqual(lowerBound(jobs, hosts) - EPS);
        expect(plan.lowerBound).toBeCloseTo(lowerBound(jobs, hosts), 9);
        for (const m of Object.values(plan.candidates)) expect(plan.makespan).toBeLessThanOrEqual(m + EPS);
        // The baselines are present whenever they apply.
        const regular = jobs.filter((j) => !j.isBuiltin);
        const local = hosts.find((h) => h.isLocal)!;
        if (local.maxJobs > 0 && regular.every((j) => fits(local, j))) expect(plan.candidates['all-local']).toBeDefined();
        for (const [name, m] of Object.entries(plan.candidates)) {
          const single = /^single-host (.*)$/.exec(name)?.[1];
          if (single) expect(simulate(jobs, hosts, { regularHosts: [single] }).makespan).toBeCloseTo(m, 9);
        }
        const usedHosts = new Set(plan.assignments.map((a) => a.host));
        expect(new Set(plan.hosts)).toEqual(usedHosts);
      }),
      { numRuns: 150 },
    );
  });

  it('the lookahead variant and the Nix-like policy keep the same invariants', () => {
    fc.assert(
      fc.property(caseArb, ({ jobs, hosts }) => {
        const look = simulate(jobs, hosts, { lookahead: true });
        checkSchedule(jobs, hosts, look.assignments);
        expect(look.makespan).toBeGreaterThanOrEqual(lowerBound(jobs, hosts) - EPS);
        checkSchedule(jobs, hosts, simulateNixLike(jobs, hosts).assignments);
      }),
      { numRuns: 100 },
    );
  });

  it('used step by step with late jobs, requeues and hosts going down, OnlineScheduler still finishes everything', () => {
    fc.assert(
      fc.property(
        caseArb,
        fc.array(fc.double({ min: 0.3, max: 3, noNaN: true }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 30 }),
        fc.boolean(),
        ({ jobs, hosts }, slowness, chaos, lookahead) => {
          const s = new OnlineScheduler(jobs, hosts, { lookahead });
          const hostById = new Map(hosts.map((h) => [h.id, h]));
          const jobById = new Map(jobs.map((j) => [j.id, j]));
          const running = new Map<string, { host: string; start: number; end: number }>();
          const final: Assignment[] = [];
          const down = new Set<string>();
          let now = 0;
          let step = 0;
          let kills = 0;
          while (!s.isComplete()) {
            for (const { jobId, host } of s.next(now)) {
              s.started(jobId, host, now);
              const j = jobById.get(jobId)!;
              const real = (j.duration / hostById.get(host)!.speedFactor) * slowness[step++ % slowness.length]!;
              running.set(jobId, { host, start: now, end: now + real });
            }
            const c = chaos[step % chaos.length]!;
            if (c % 7 === 0 && running.size > 0 && kills < 5) {
              kills++;
              // A host dies: everything on it goes back to the queue.
              const victim = [...running.values()][c % running.size]!.host;
              down.add(victim);
              s.setHostAvailable(victim, false);
              for (const [id, r] of [...running]) {
                if (r.host !== victim) continue;
                s.requeue(id);
                running.delete(id);
              }
              step++;
              continue;
            }
            if (running.size === 0) {
              // Nothing to wait for: hosts come back (otherwise jobs that only fit them never run).
              expect(down.size).toBeGreaterThan(0);
              for (const h of down) s.setHostAvailable(h, true);
              down.clear();
              continue;
            }
            const [id, r] = [...running].reduce((a, b) => (b[1].end < a[1].end ? b : a));
            now = r.end;
            running.delete(id);
            s.finished(id, now);
            final.push({ jobId: id, host: r.host, start: r.start, end: r.end });
            if (c % 5 === 0 && down.size > 0) {
              for (const h of down) s.setHostAvailable(h, true);
              down.clear();
            }
            step++;
          }
          expect(final).toHaveLength(jobs.length);
          const byId = new Map(final.map((a) => [a.jobId, a]));
          for (const job of jobs) {
            const a = byId.get(job.id)!;
            expect(fits(hostById.get(a.host)!, job)).toBe(true);
            for (const d of job.deps) expect(a.start).toBeGreaterThanOrEqual(byId.get(d)!.end - EPS);
          }
          for (const h of hosts) {
            const mine = final.filter((a) => a.host === h.id);
            for (const a of mine) {
              const overlapping = mine.filter((b) => b.start <= a.start && b.end > a.start).length;
              expect(overlapping).toBeLessThanOrEqual(Math.max(slotLimit(h, false), slotLimit(h, true)));
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
