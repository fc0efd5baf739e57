import { describe, expect, it } from 'vitest';
import { markFetchesOnBuilders, splitFetchesOnBuilders } from '../../src/schedule/fetchOnBuilders.js';
import { TRANSFER_LANE, type Job } from '../../src/schedule/types.js';
import { testHost, testJob } from './scheduleFixtures.js';

const local = testHost('local', { maxJobs: 0 });
const ruby = testHost('ruby', { maxJobs: 2 });
const lane = testHost(TRANSFER_LANE, { systems: [], maxJobs: 16, transferLane: true });
const arm = testHost('arm', { systems: ['aarch64-linux'], maxJobs: 2 });

function fetchJob(id: string, deps: string[] = []): Job {
  return testJob(id, 1, deps, { action: 'fetch', transfer: { bytes: 1000, from: 'https://cache.example', paths: [`/nix/store/${id}-out`] } });
}

function onBuilders(jobs: Job[]): string[] {
  return jobs.filter((j) => j.transfer?.onBuilder).map((j) => j.id).sort();
}

describe('markFetchesOnBuilders: what only builders need is fetched there', () => {
  // top (root, built) ← leaf-a (fetched, refers to lib), leaf-b (fetched); lib (a reference only)
  const jobs = [fetchJob('lib'), fetchJob('leaf-a', ['lib']), fetchJob('leaf-b'), testJob('top', 10, ['leaf-a', 'leaf-b'])];

  it('leaves the inputs of a build a builder can run, and their references, to the builder', () => {
    expect(onBuilders(markFetchesOnBuilders(jobs, ['top'], [local, ruby, lane]))).toEqual(['leaf-a', 'leaf-b', 'lib']);
  });

  it('fetches here what the roots are: their outputs and runtime closure come to the local store', () => {
    const rootFetched = [fetchJob('lib'), fetchJob('app', ['lib']), fetchJob('tool'), testJob('other', 10, ['tool'])];
    expect(onBuilders(markFetchesOnBuilders(rootFetched, ['app', 'other'], [local, ruby, lane]))).toEqual(['tool']);
  });

  it('fetches here the inputs of a build only this machine can run, with their references', () => {
    const armOnly = [fetchJob('lib'), fetchJob('leaf-a', ['lib']), fetchJob('leaf-b'), testJob('top', 10, ['leaf-a', 'leaf-b'], { system: 'aarch64-linux' })];
    expect(onBuilders(markFetchesOnBuilders(armOnly, ['top'], [testHost('local', { systems: ['aarch64-linux'], maxJobs: 2 }), ruby, lane]))).toEqual([]);
    expect(onBuilders(markFetchesOnBuilders(armOnly, ['top'], [local, arm, lane]))).toEqual(['leaf-a', 'leaf-b', 'lib']);
    const builtin = [fetchJob('src'), testJob('unpack', 1, ['src'], { isBuiltin: true }), testJob('top', 10, ['unpack'])];
    expect(onBuilders(markFetchesOnBuilders(builtin, ['top'], [local, ruby, lane]))).toEqual([]);
  });

  it('keeps a reference here when a local fetch needs it, even if a builder-only fetch refers to it too', () => {
    const shared = [fetchJob('lib'), fetchJob('app', ['lib']), fetchJob('leaf', ['lib']), testJob('top', 10, ['leaf'])];
    expect(onBuilders(markFetchesOnBuilders(shared, ['app', 'top'], [local, ruby, lane]))).toEqual(['leaf']);
  });

  it('fetches everything here when there is no builder to fetch it', () => {
    expect(onBuilders(markFetchesOnBuilders(jobs, ['top'], [testHost('local', { maxJobs: 4 }), testHost('ruby', { maxJobs: 0 }), lane]))).toEqual([]);
  });
});

describe('splitFetchesOnBuilders', () => {
  it('takes the builders’ fetches out of the schedule, and the builds stop waiting for them', () => {
    const marked = markFetchesOnBuilders(
      [fetchJob('lib'), fetchJob('leaf-a', ['lib']), fetchJob('app'), testJob('mid', 5, ['leaf-a']), testJob('top', 10, ['mid', 'app'])],
      ['top', 'app'],
      [local, ruby, lane],
    );
    const { scheduled, onBuilders: builders } = splitFetchesOnBuilders(marked);
    expect(builders.map((j) => j.id).sort()).toEqual(['leaf-a', 'lib']);
    expect(scheduled.map((j) => [j.id, j.deps])).toEqual([
      ['app', []],
      ['mid', []],
      ['top', ['mid', 'app']],
    ]);
  });
});
