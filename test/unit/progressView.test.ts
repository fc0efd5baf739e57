import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { LiveView, renderProgress, visibleLength, type ProgressState } from '../../src/report/progressView.js';

const state: ProgressState = {
  hosts: [
    {
      id: 'ruby',
      slots: 4,
      running: [
        { name: 'gcc-13.2.0', elapsed: 62, estimate: 300 },
        { name: 'python3-3.11.4-with-a-very-long-name-indeed', elapsed: 400, estimate: 100 },
      ],
    },
    { id: 'local', slots: 2, running: [] },
    { id: 'sapphire', slots: 8, running: [], down: 'connection lost (3 times)' },
  ],
  counts: { done: 12, running: 2, queued: 30, failed: 1, skipped: 0 },
  etaSeconds: 200,
  elapsed: 95,
};

describe('renderProgress', () => {
  it('shows counts, ETA, each host with its running builds, idle and down hosts', () => {
    expect(renderProgress(state, { width: 160 })).toEqual([
      'offload  12 done · 2 running · 30 queued · 1 failed  1m35s elapsed  ETA 3m20s',
      ' ruby     2/4 python3-3.11.4-with-a-very-long-name-indeed 6m40s/1m40s · gcc-13.2.0 1m02s/5m00s',
      ' local    0/2 idle',
      ' sapphire 0/8 down: connection lost (3 times)',
    ]);
  });

  it('truncates names to fit a narrow terminal, then hides builds behind +N more', () => {
    // A short name keeps all of itself; the long one takes what is left.
    expect(renderProgress(state, { width: 66 })[1]).toBe(' ruby     2/4 python3-3.11.… 6m40s/1m40s · gcc-13.2.0 1m02s/5m00s');
    expect(renderProgress(state, { width: 60 })[1]).toBe(' ruby     2/4 python3-… 6m40s/1m40s · gcc-13.2… 1m02s/5m00s');
    const narrow = renderProgress(state, { width: 45 });
    expect(narrow[1]).toBe(' ruby     2/4 python3-… 6m40s/1m40s  +1 more');
    for (const line of narrow) expect(line.length).toBeLessThanOrEqual(44);
  });

  it('colours only when asked, without changing the visible text', () => {
    const plain = renderProgress(state, { width: 100 });
    const colored = renderProgress(state, { width: 100, color: true });
    expect(plain.join('')).not.toContain('\x1b[');
    expect(colored.join('')).toContain('\x1b[31m');
    expect(colored.map((l) => l.replace(/\x1b\[[0-9;]*m/g, ''))).toEqual(plain);
  });

  it('keeps to maxLines, saying how many hosts are hidden', () => {
    expect(renderProgress(state, { width: 100, maxLines: 3 }).slice(2)).toEqual(['… 2 more hosts']);
  });

  it('never exceeds width - 1 columns, whatever the names and counts', () => {
    const job = fc.record({ name: fc.string({ maxLength: 80 }), elapsed: fc.nat(1e6), estimate: fc.option(fc.nat(1e6), { nil: undefined }) });
    const host = fc.record({ id: fc.string({ minLength: 1, maxLength: 40 }), slots: fc.nat(64), running: fc.array(job, { maxLength: 10 }) });
    fc.assert(
      fc.property(fc.array(host, { maxLength: 6 }), fc.integer({ min: 1, max: 300 }), fc.boolean(), (hosts, width, color) => {
        const s: ProgressState = { hosts, counts: { done: 1e6, running: 3, queued: 12345, failed: 2, skipped: 99 }, etaSeconds: 1e5 };
        for (const line of renderProgress(s, { width, color })) expect(visibleLength(line)).toBeLessThanOrEqual(Math.max(20, width) - 1);
      }),
      { numRuns: 200 },
    );
  });
});

describe('LiveView', () => {
  let writes: string[];
  let clock: number;
  const stream = { columns: 80, write: (s: string) => writes.push(s) };

  beforeEach(() => {
    vi.useFakeTimers();
    writes = [];
    clock = 0;
  });
  afterEach(() => vi.useRealTimers());

  const view = () => new LiveView(stream, { fps: 10, now: () => clock });
  const withDone = (done: number): ProgressState => ({ ...state, counts: { ...state.counts, done } });

  it('hides the cursor, draws, and shows it again on stop', () => {
    const v = view();
    v.update(state);
    v.stop();
    expect(writes[0]).toBe('\x1b[?25l');
    expect(writes[1]).toBe(`\r${renderProgress(state, { width: 80 }).map((l) => `${l}\x1b[K\n`).join('')}\x1b[J`);
    expect(writes.at(-1)).toBe('\x1b[?25h');
  });

  it('redraws in place: up over the previous frame, no blanking first', () => {
    const v = view();
    v.update(withDone(1));
    clock += 200;
    v.update(withDone(2));
    expect(writes[2]!.startsWith('\r\x1b[4A')).toBe(true);
    expect(writes[2]).toContain('2 done');
    v.stop();
  });

  it('draws at most 10 frames a second, the latest state winning', () => {
    const v = view();
    v.update(withDone(1));
    v.update(withDone(2));
    v.update(withDone(3));
    expect(writes).toHaveLength(2);
    clock += 100;
    vi.advanceTimersByTime(100);
    expect(writes).toHaveLength(3);
    expect(writes[2]).toContain('3 done');
    v.stop();
  });

  it('skips frames whose text did not change', () => {
    const v = view();
    v.update(state);
    clock += 500;
    v.update({ ...state });
    expect(writes).toHaveLength(2);
    v.stop();
  });

  it('prints log lines above the view and redraws it below', () => {
    const v = view();
    v.update(state);
    v.log('ruby> building\nruby> done');
    expect(writes[2]).toMatch(/^\r\x1b\[4Aruby> building\x1b\[K\nruby> done\x1b\[K\noffload {2}12 done/);
    v.stop();
    v.log('after');
    expect(writes.at(-1)).toBe('after\n');
  });
});
