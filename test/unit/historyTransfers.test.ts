import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { historyRecorder } from '../../src/cli/runHistory.js';
import { transferEstimates } from '../../src/cli/substitution.js';
import type { BuildGraph } from '../../src/graph/buildGraph.js';
import type { FetchUnit } from '../../src/graph/queryMissing.js';
import { MIN_RATE_SAMPLE_BYTES } from '../../src/history/buildHistory.js';
import { SqliteBuildHistory } from '../../src/history/sqliteBuildHistory.js';
import type { RunEvent } from '../../src/run/runEvents.js';
import { defaultDurationRules } from '../../src/schedule/durations.js';
import { DEFAULT_FETCH_BYTES_PER_SECOND, jobsForWork, TRANSFER_OVERHEAD_SECONDS } from '../../src/schedule/transferJobs.js';

const CACHE = 'https://cache.example.org';
const MiB = 1024 * 1024;
let dir: string;
let history: SqliteBuildHistory;
let clock = Date.UTC(2026, 0, 1);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-history-transfers-'));
  history = new SqliteBuildHistory(join(dir, 'history.sqlite'));
});
afterEach(async () => {
  await history.close();
  rmSync(dir, { recursive: true, force: true });
});

async function transfer(source: string, bytes: number, seconds: number): Promise<void> {
  clock += 1000;
  await history.recordTransfer({ source, bytes, seconds, finishedAt: new Date(clock) });
}

const rate = async (source: string) => (await history.transferRates()).get(source);

describe('the transfers history: a download rate per cache and builder', () => {
  it('is the median rate of the last 10 transfers from that source, counting only ones big enough to tell', async () => {
    expect(await rate(CACHE)).toBeUndefined();
    await transfer(CACHE, 10 * MiB, 1);
    await transfer(CACHE, 10 * MiB, 2);
    await transfer(CACHE, 10 * MiB, 4);
    // Mostly fixed cost: says nothing about the rate.
    await transfer(CACHE, MIN_RATE_SAMPLE_BYTES - 1, 100);
    await transfer('ruby', 100 * MiB, 1);
    expect(await rate(CACHE)).toBe(5 * MiB);
    expect(await rate('ruby')).toBe(100 * MiB);
    for (let i = 0; i < 10; i++) await transfer(CACHE, 40 * MiB, 1);
    expect(await rate(CACHE)).toBe(40 * MiB);
  });

  it('ignores samples that cannot be rates', async () => {
    await transfer(CACHE, 10 * MiB, 0);
    await transfer(CACHE, -1, 1);
    await transfer(CACHE, Number.NaN, 1);
    expect(await rate(CACHE)).toBeUndefined();
  });
});

describe('historyRecorder and fetches', () => {
  const finished = (over: Partial<Extract<RunEvent, { type: 'jobFinished' }>>): RunEvent => ({
    type: 'jobFinished',
    time: 5,
    jobId: '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-zlib-1.3.drv',
    name: 'zlib-1.3',
    host: 'caches',
    status: 'fetched',
    seconds: 2,
    action: 'fetch',
    bytes: 8 * MiB,
    from: CACHE,
    ...over,
  });

  it('records every fetch and copy that arrived, here or on a builder, as a transfer from its source', async () => {
    const record = historyRecorder(history, new Map(), () => 1, () => undefined, () => new Date(clock));
    record(finished({}));
    record(finished({ host: 'ruby', bytes: 16 * MiB }));
    record(finished({ status: 'copied', action: 'copy', from: 'kana', bytes: 30 * MiB, seconds: 1 }));
    // A fetch a builder could not make goes on here; one that fell back moved nothing.
    record(finished({ status: 'requeued', host: 'ruby', bytes: 100 * MiB, seconds: 0.1 }));
    record(finished({ status: 'fell-back', bytes: 100 * MiB, seconds: 0.1 }));
    // The recorder writes in the background: let those writes settle.
    await new Promise((resolve) => setImmediate(resolve));
    expect(await rate(CACHE)).toBe(6 * MiB);
    expect(await rate('kana')).toBe(30 * MiB);
    // Fetches are not builds: no duration sample for the derivation.
    expect(await history.estimateMany([{ name: 'zlib-1.3', system: 'x86_64-linux' }])).toEqual(new Map());
  });
});

describe('the plan’s fetch estimate', () => {
  const unit: FetchUnit = {
    id: '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-zlib-1.3.drv',
    name: 'zlib-1.3',
    drvPath: '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-zlib-1.3.drv',
    paths: ['/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-zlib-1.3'],
    deps: [],
    downloadBytes: 60 * MiB,
    narBytes: 200 * MiB,
    cache: CACHE,
  };
  const graph: BuildGraph = { roots: [unit.id], nodes: new Map(), order: [], alreadyValid: [] };
  const fetchSeconds = async () => {
    const rates = await history.transferRates();
    return jobsForWork({ graph, fetch: [unit], held: [] }, defaultDurationRules, undefined, transferEstimates((s) => rates.get(s)))[0]!.duration;
  };

  it('uses the default rate for a cache never downloaded from, then the rate learned from it', async () => {
    expect(await fetchSeconds()).toBeCloseTo(TRANSFER_OVERHEAD_SECONDS + (60 * MiB) / DEFAULT_FETCH_BYTES_PER_SECOND);
    await transfer(CACHE, 12 * MiB, 4);
    expect(await fetchSeconds()).toBeCloseTo(TRANSFER_OVERHEAD_SECONDS + 20);
  });
});
