import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { BuildStatus } from '../../src/remote/buildResult.js';
import { ConnectionLostError } from '../../src/remote/sshErrors.js';
import { Executor, type ExecutorOptions } from '../../src/run/executor.js';
import type { RunEvent } from '../../src/run/runEvents.js';
import type { RunResult } from '../../src/run/runResult.js';
import { SlotGate } from '../../src/run/slotGate.js';
import { SqliteSlotLeases } from '../../src/slots/sqliteSlotLeases.js';
import { testJob } from './scheduleFixtures.js';
import { drvPath, fakeDrvs, FakeHosts, FakeScheduler, gate, outPath } from './runFakes.js';

interface Setup {
  /** Job name → names of the jobs it needs. */
  deps: Record<string, string[]>;
  /** Host → maxJobs, in the order the fake scheduler tries them. */
  slots: Record<string, number>;
  pins?: Record<string, string[]>;
  options?: Partial<ExecutorOptions>;
  reserves?: string[];
  slotGate?: SlotGate;
}

/** An executor over the fakes; hosts leave the rotation for 10 ms, so back-offs end within a test. */
function setup(s: Setup) {
  const drvs = fakeDrvs(s.deps);
  const needed = new Set(Object.values(s.deps).flat());
  const roots = Object.keys(s.deps).filter((name) => !needed.has(name)).map(drvPath);
  const jobs = Object.entries(s.deps).map(([name, deps]) => ({ ...testJob(drvPath(name), 10, deps.map(drvPath)), name }));
  const scheduler = new FakeScheduler(
    new Map(jobs.map((j) => [j.id, j.deps])),
    new Map(Object.entries(s.slots)),
    new Map(Object.entries(s.pins ?? {}).map(([name, hosts]) => [drvPath(name), hosts])),
  );
  const hosts = new FakeHosts(Object.keys(s.slots).filter((h) => h !== 'local'));
  const log: string[] = [];
  const events: RunEvent[] = [];
  const start = performance.now();
  const executor = new Executor({
    drvs,
    roots,
    jobs,
    scheduler,
    channels: hosts,
    localPaths: [],
    ...(s.reserves ? { reserveHosts: s.reserves } : {}),
    options: {
      keepGoing: false,
      copyBack: 'needed',
      buildersUseSubstitutes: false,
      hostHealth: { failureThreshold: 2, backoffSeconds: 0.01, maxBackoffSeconds: 0.01 },
      ...s.options,
    },
    log: (line) => log.push(line),
    now: () => (performance.now() - start) / 1000,
    onEvent: (event) => events.push(event),
    ...(s.slotGate ? { slots: s.slotGate } : {}),
  });
  const statusOf = (result: RunResult, name: string) => result.records.find((r) => r.name === name)?.status;
  const eventsOf = (type: RunEvent['type']) => events.filter((e) => e.type === type).map((e) => ('host' in e ? `${e.host}` : ''));
  return { executor, scheduler, hosts, log, events, statusOf, eventsOf };
}

/** `host` dies (its connection reset) the first time a path is exported from it. */
function dropOnFirstExport(hosts: FakeHosts, executor: Executor, host: string): { readonly dropped: boolean } {
  const state = { dropped: false };
  hosts.onExport = (from) => {
    if (from !== host || state.dropped) return;
    state.dropped = true;
    hosts.kill(host);
    executor.hostDown(host, new ConnectionLostError(host, 'connection reset'));
  };
  return state;
}

describe('Executor with fake hosts and scheduler', () => {
  it('builds a chain where the scheduler says, keeps the intermediate output on the builder, and brings the root home', async () => {
    const { executor, hosts } = setup({ deps: { a: [], b: ['a'] }, slots: { ruby: 1 } });
    const result = await executor.run();
    expect(hosts.builds).toEqual(['ruby a', 'ruby b']);
    expect(hosts.streamed).toEqual(['ruby→local b']);
    expect(result.outputs).toEqual({ [drvPath('b')]: { out: outPath('b') } });
    expect(result.records.map((r) => r.status)).toEqual(['built', 'built']);
  });

  it("copies a root's output back over the channel it was built on, not a second one to the builder", async () => {
    const { executor, hosts } = setup({ deps: { a: [] }, slots: { ruby: 1 } });
    await executor.run();
    expect(hosts.streamed).toEqual(['ruby→local a']);
    expect(hosts.acquired.filter((host) => host === 'ruby')).toEqual(['ruby']);
  });

  it("on a builder whose post-build-hook signs, asks a fresh channel for the outputs and closes the build's own", async () => {
    const { executor, hosts } = setup({ deps: { a: [], b: ['a'] }, slots: { ruby: 1, kana: 1 }, pins: { a: ['ruby'], b: ['ruby'] }, options: { signsAfterBuild: (host) => host === 'ruby' } });
    const result = await executor.run();
    expect(result.records.map((r) => r.status)).toEqual(['built', 'built']);
    expect(hosts.streamed).toEqual(['ruby→local b']);
    // One channel per build (each closed after it) and one for the copy back: never the process that built b.
    expect(hosts.acquired.filter((host) => host === 'ruby')).toEqual(['ruby', 'ruby', 'ruby']);
    expect(hosts.openChannels.get('ruby')).toBe(1);
  });

  it('closes the build channel when the copy back over it fails', async () => {
    const { executor, hosts, statusOf } = setup({ deps: { a: [] }, slots: { ruby: 1, kana: 1 }, pins: { a: ['ruby'] } });
    const ruby = dropOnFirstExport(hosts, executor, 'ruby');
    const result = await executor.run();
    expect(ruby.dropped).toBe(true);
    expect(statusOf(result, 'a')).not.toBe('built');
    expect(hosts.openChannels.get('ruby')).toBe(0);
  });

  it('retries a transient failure, takes the host out after two in a row, and reconnects it once the back-off is over', async () => {
    const { executor, hosts, scheduler, log, events, statusOf, eventsOf } = setup({
      deps: { flaky: [], slow: [] },
      slots: { ruby: 1, kana: 2 },
      pins: { slow: ['kana'] },
    });
    hosts.script('flaky', BuildStatus.TransientFailure, BuildStatus.TransientFailure);
    // slow keeps the run going until ruby is back, so the reconnect is seen.
    const slowDone = gate<BuildStatus>();
    hosts.script('slow', slowDone.promise);
    const watch = setInterval(() => {
      if (events.some((e) => e.type === 'hostBack')) slowDone.open(BuildStatus.Built);
    }, 1);
    const result = await executor.run().finally(() => clearInterval(watch));
    expect(hosts.builds.filter((b) => b.endsWith('flaky'))).toEqual(['ruby flaky', 'ruby flaky', 'kana flaky']);
    expect(statusOf(result, 'flaky')).toBe('built');
    expect(scheduler.requeued).toEqual([drvPath('flaky'), drvPath('flaky')]);
    expect(log).toContain('offload: ruby failed (flaky: TransientFailure: scripted); trying it again on next use (1 of 2 failures in a row before it is taken out)');
    expect(log).toContain('offload: ruby is down (flaky: TransientFailure: scripted); its jobs go to other machines; retrying it in 0 s');
    expect(eventsOf('hostDown')).toEqual(['ruby']);
    expect(eventsOf('hostBack')).toEqual(['ruby']);
    expect(scheduler.availability.filter((a) => a.startsWith('ruby'))).toEqual(['ruby:false', 'ruby:true']);
    expect(result.hosts).toEqual([expect.objectContaining({ host: 'ruby', failures: 2, timesOut: 1, outAtEnd: false })]);
  });

  it('gives up on a job after three transient failures, as a failed build', async () => {
    const { executor, hosts, statusOf } = setup({
      deps: { flaky: [] },
      slots: { ruby: 1, kana: 1, aqua: 1 },
      options: { hostHealth: { failureThreshold: 5, backoffSeconds: 1, maxBackoffSeconds: 1 } },
    });
    hosts.script('flaky', BuildStatus.TransientFailure, BuildStatus.TransientFailure, BuildStatus.TransientFailure, BuildStatus.TransientFailure);
    const result = await executor.run();
    expect(hosts.builds).toHaveLength(4);
    expect(statusOf(result, 'flaky')).toBe('failed');
  });

  it('reruns the producer of an input whose only copy went down with its builder mid-transfer', async () => {
    const { executor, hosts, log, statusOf, eventsOf } = setup({
      deps: { a: [], b: ['a'] },
      slots: { ruby: 1, kana: 1 },
      pins: { b: ['kana'] },
    });
    // a is built on ruby; when kana starts fetching it, ruby dies.
    dropOnFirstExport(hosts, executor, 'ruby');
    const result = await executor.run();
    expect(eventsOf('hostDown')).toEqual(['ruby']);
    expect(log).toContain("offload: the only copy of a's outputs was lost with ruby; building it again");
    expect(hosts.builds).toEqual(['ruby a', 'kana a', 'kana b']);
    expect(hosts.streamed.filter((s) => s.startsWith('ruby'))).toEqual([]);
    expect(statusOf(result, 'a')).toBe('built');
    expect(statusOf(result, 'b')).toBe('built');
  });

  it('does not rebuild a lost output that nothing unfinished needs', async () => {
    const { executor, hosts, log, statusOf } = setup({
      deps: { a: [], b: ['a'], c: [] },
      slots: { ruby: 1, kana: 1 },
      pins: { a: ['ruby'], b: ['ruby'], c: ['kana'] },
    });
    const cDone = gate<BuildStatus>();
    hosts.script('c', cDone.promise);
    const watch = setInterval(() => {
      if (hosts.builds.includes('ruby b') && hosts.streamed.includes('ruby→local b')) {
        clearInterval(watch);
        hosts.kill('ruby');
        executor.hostDown('ruby', new ConnectionLostError('ruby', 'connection reset'));
        cDone.open(BuildStatus.Built);
      }
    }, 1);
    const result = await executor.run();
    expect(hosts.builds.filter((b) => b === 'ruby a')).toHaveLength(1);
    expect(log.filter((l) => l.includes('building it again'))).toEqual([]);
    expect(['a', 'b', 'c'].map((n) => statusOf(result, n))).toEqual(['built', 'built', 'built']);
  });

  it('brings in a reserve host when a planned one goes down', async () => {
    const { executor, hosts, scheduler, statusOf } = setup({ deps: { a: [] }, slots: { ruby: 1, kana: 1 }, reserves: ['kana'] });
    hosts.unreachable.add('ruby');
    executor.hostDown('ruby', new ConnectionLostError('ruby', 'no route', { hung: true }));
    const result = await executor.run();
    expect(scheduler.availability).toEqual(['ruby:false', 'kana:true']);
    expect(hosts.builds).toEqual(['kana a']);
    expect(statusOf(result, 'a')).toBe('built');
  });

  it('stops with the hosts that are down when what is left fits only them', async () => {
    const { executor, hosts, statusOf } = setup({
      deps: { a: [] },
      slots: { ruby: 1 },
      options: { hostHealth: { failureThreshold: 2, backoffSeconds: 60, maxBackoffSeconds: 60 } },
    });
    hosts.unreachable.add('ruby');
    executor.hostDown('ruby', new ConnectionLostError('ruby', 'no route', { hung: true }));
    const result = await executor.run();
    expect(statusOf(result, 'a')).toBe('not-started');
    expect(result.stuck?.reason).toBe('no available machine fits them (ruby is down: connection to ruby lost: no route)');
  });

  it('waits while every host is full of another runner’s builds, and starts as soon as a slot frees', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offload-executor-slots-'));
    const file = join(dir, 'slots.sqlite');
    const other = new SqliteSlotLeases({ file });
    const mine = new SqliteSlotLeases({ file });
    try {
      const request = (host: string) => ({ host, maxJobs: 1, priority: 1 });
      const [onRuby, onKana] = await other.exchange({ release: [], requests: [request('ruby:22'), request('kana:22')], waiting: new Map() });
      const slotGate = new SlotGate({
        leases: mine,
        keys: new Map([
          ['ruby', 'ruby:22'],
          ['kana', 'kana:22'],
        ]),
        maxJobs: new Map([
          ['ruby', 1],
          ['kana', 1],
        ]),
        log: () => undefined,
      });
      const { executor, hosts, scheduler, statusOf } = setup({ deps: { a: [] }, slots: { ruby: 1, kana: 1 }, slotGate });
      // The other runner ends its build on kana a moment after this run found every host full;
      // its build on ruby goes on after this run is done, which must not keep this run waiting.
      const watch = setInterval(() => {
        if (scheduler.availability.includes('kana:false')) {
          clearInterval(watch);
          void other.exchange({ release: [onKana!], requests: [], waiting: new Map() });
        }
      }, 1);
      const result = await executor.run();
      clearInterval(watch);
      expect(scheduler.availability.slice(0, 2)).toEqual(['ruby:false', 'kana:false']);
      expect(scheduler.availability).toContain('kana:true');
      expect(hosts.builds).toEqual(['kana a']);
      expect(statusOf(result, 'a')).toBe('built');
      expect(await mine.inUse('kana:22')).toBe(0);
      expect(await other.inUse('ruby:22')).toBe(1);
      expect(onRuby).toBeDefined();
    } finally {
      await mine.close();
      await other.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops after a failed build, leaving the rest unstarted, unless told to keep going', async () => {
    const deps = { bad: [], after: ['bad'], other: [] };
    const stop = setup({ deps, slots: { ruby: 1 } });
    stop.hosts.script('bad', BuildStatus.PermanentFailure);
    const stopped = await stop.executor.run();
    expect(['bad', 'after', 'other'].map((n) => stop.statusOf(stopped, n))).toEqual(['failed', 'skipped', 'not-started']);
    expect(stopped.stuck).toBeUndefined();
    expect(stop.log).toContain(`offload: building ${drvPath('bad')} on ruby failed: PermanentFailure: scripted`);
    expect(stop.eventsOf('jobSkipped')).toEqual(['']);

    const go = setup({ deps, slots: { ruby: 1 }, options: { keepGoing: true } });
    go.hosts.script('bad', BuildStatus.PermanentFailure);
    const kept = await go.executor.run();
    expect(['bad', 'after', 'other'].map((n) => go.statusOf(kept, n))).toEqual(['failed', 'skipped', 'built']);
  });

  it('on interrupt starts nothing new and reports the running job interrupted', async () => {
    const { executor, hosts, statusOf } = setup({ deps: { slow: [], next: [] }, slots: { ruby: 1 } });
    const slowDone = gate<'lose-connection'>();
    hosts.script('slow', slowDone.promise);
    const watch = setInterval(() => {
      if (hosts.builds.length === 0) return;
      clearInterval(watch);
      executor.interrupt();
      // The CLI closes the channels; the running build then fails.
      slowDone.open('lose-connection');
    }, 1);
    const result = await executor.run();
    expect(result.interrupted).toBe(true);
    expect(hosts.builds).toEqual(['ruby slow']);
    expect([statusOf(result, 'slow'), statusOf(result, 'next')]).toEqual(['interrupted', 'not-started']);
  });

  it('rethrows a programming error from a job instead of reporting a build failure', async () => {
    const { executor, hosts } = setup({ deps: { a: [] }, slots: { ruby: 1 } });
    hosts.script('a', Promise.reject(new TypeError('a bug')));
    await expect(executor.run()).rejects.toThrow(TypeError);
  });
});
