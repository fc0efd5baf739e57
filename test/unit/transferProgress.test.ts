import { describe, expect, it } from 'vitest';
import { eventLine, transferProgressText } from '../../src/report/eventLines.js';
import { eventJsonLine } from '../../src/report/eventStream.js';
import { renderProgress } from '../../src/report/progressView.js';
import { ProgressTracker } from '../../src/report/progressTracker.js';
import { TransferProgress } from '../../src/report/transferProgress.js';
import type { RunEvent } from '../../src/run/runEvents.js';
import { hosts, jobs } from './observersFixtures.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const started: RunEvent = { type: 'transferStarted', time: 10, transferId: 7, from: 'ruby', to: 'local', paths: 1, bytes: GiB };
const progress = (time: number, bytes: number): RunEvent => ({ type: 'transferProgress', time, transferId: 7, bytes, total: GiB });

describe('TransferProgress', () => {
  it('gives bytes, a rate over the last seconds and the ETA at that rate', () => {
    const t = new TransferProgress();
    t.apply(started);
    expect(t.get(7, 10)).toEqual({ transferId: 7, from: 'ruby', to: 'local', paths: 1, bytes: 0, total: GiB, elapsed: 0 });
    t.apply(progress(11, 100 * MiB));
    expect(t.get(7, 11)).toMatchObject({ bytes: 100 * MiB, rate: 100 * MiB, eta: (GiB - 100 * MiB) / (100 * MiB) });
    t.apply(progress(12, 200 * MiB));
    t.apply(progress(14, 400 * MiB));
    // The link slows down to 10 MiB/s: within a few seconds the rate says so, not the average since the start.
    for (let s = 15; s <= 20; s++) t.apply(progress(s, 400 * MiB + (s - 14) * 10 * MiB));
    const slow = t.get(7, 20)!;
    expect(slow.rate).toBeCloseTo(10 * MiB, -3);
    expect(slow.eta).toBeCloseTo((GiB - 460 * MiB) / (10 * MiB), 0);
  });

  it('forgets a finished transfer and shows only those that moved long enough', () => {
    const t = new TransferProgress();
    t.apply(started);
    t.apply({ ...started, transferId: 8, time: 10.5 });
    expect(t.moving(11, 1).map((s) => s.transferId)).toEqual([7]);
    t.apply({ type: 'transferFinished', time: 12, transferId: 7, from: 'ruby', to: 'local', bytes: GiB, seconds: 2 });
    expect(t.get(7, 12)).toBeUndefined();
    expect(t.moving(12, 1).map((s) => s.transferId)).toEqual([8]);
  });
});

describe('transfer progress on screen and in events', () => {
  it('draws a line per long transfer in the live view: bytes, rate, ETA', () => {
    const tracker = new ProgressTracker(jobs, hosts);
    tracker.apply(started);
    tracker.apply(progress(12, 256 * MiB));
    expect(tracker.state(10.5).transfers).toBeUndefined();
    const lines = renderProgress(tracker.state(12), { width: 120 });
    expect(lines.at(-1)).toBe(' copy ruby -> local  256.00 MiB / 1.00 GiB  128.00 MiB/s  ETA 6s');
    tracker.apply({ type: 'transferFinished', time: 16, transferId: 7, from: 'ruby', to: 'local', bytes: GiB, seconds: 6 });
    expect(tracker.state(16).transfers).toBeUndefined();
  });

  it('narrates large transfers where no live view shows them, and leaves small ones to --json-events', () => {
    expect(eventLine(started)).toBe('[10.0s] ruby -> local: copying 1 path (1.00 GiB)');
    expect(eventLine({ type: 'transferFinished', time: 18, transferId: 7, from: 'ruby', to: 'local', bytes: GiB, seconds: 8 })).toBe('[18.0s] ruby -> local: copied 1.00 GiB in 8.0s (128.00 MiB/s)');
    expect(eventLine({ ...started, bytes: MiB })).toBeUndefined();
    expect(eventLine({ type: 'transferFinished', time: 11, transferId: 7, from: 'ruby', to: 'local', bytes: MiB, seconds: 1, error: 'ruby cannot be trusted' })).toBe(
      '[11.0s] ruby -> local: copy failed after 1.00 MiB: ruby cannot be trusted',
    );
    expect(eventLine(progress(12, 256 * MiB))).toBeUndefined();
    expect(transferProgressText({ transferId: 7, from: 'ruby', to: 'local', paths: 1, bytes: 256 * MiB, total: GiB, elapsed: 2, rate: 128 * MiB, eta: 6 })).toBe(
      'ruby -> local: 256.00 MiB of 1.00 GiB, 128.00 MiB/s, ETA 6s',
    );
    expect(JSON.parse(eventJsonLine(progress(12.0004, 256 * MiB)))).toEqual({ type: 'transferProgress', time: 12, transferId: 7, bytes: 256 * MiB, total: GiB });
  });
});
