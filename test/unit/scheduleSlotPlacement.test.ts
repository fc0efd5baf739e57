import { describe, expect, it } from 'vitest';
import { book, choose, isOpen, slotView, type PlacementHosts } from '../../src/schedule/slotPlacement.js';

// Host 0: speed 1 (local), host 1: speed 2, host 2: speed 4.
const hosts: PlacementHosts = { speed: Float64Array.from([1, 2, 4]), isLocal: [true, false, false], slackPlacement: true };
const all = [0, 1, 2];

describe('slot placement', () => {
  it('a slot view lists free slots at now and busy ones at their expected end, earliest first, within the limit', () => {
    expect(slotView([30, 10], 3, 5)).toEqual([
      { t: 5, gapEnd: -1 },
      { t: 10, gapEnd: -1 },
      { t: 30, gapEnd: -1 },
    ]);
    expect(slotView([30, 10, 20], 2, 5).map((v) => v.t)).toEqual([10, 20]);
  });

  it('a critical job (no slack) takes the earliest finish: the fastest free host', () => {
    const views = all.map(() => slotView([], 1, 0));
    expect(choose({ duration: 40, deadline: 10 }, all, views, 0, 0, hosts)).toMatchObject({ host: 2, eft: 10, now: true });
  });

  it('a job with slack takes the slowest host that still ends by its deadline', () => {
    const views = all.map(() => slotView([], 1, 0));
    expect(choose({ duration: 40, deadline: 25 }, all, views, 0, 0, hosts)).toMatchObject({ host: 1, eft: 20 });
    expect(choose({ duration: 40, deadline: 25 }, all, views, 0, 0, { ...hosts, slackPlacement: false })).toMatchObject({ host: 2 });
  });

  it('waits for a fast host that frees soon rather than start on a slow one', () => {
    const views = [slotView([], 1, 0), slotView([], 1, 0), slotView([2], 1, 0)];
    expect(choose({ duration: 40, deadline: 0 }, all, views, 0, 0, hosts)).toMatchObject({ host: 2, eft: 12, now: false });
  });

  it('preferLocalBuild takes a free local slot', () => {
    const views = all.map(() => slotView([], 1, 0));
    expect(choose({ duration: 40, deadline: 0, preferLocalBuild: true }, all, views, 0, 0, hosts)).toMatchObject({ host: 0, now: true });
  });

  it('a slot held for an upcoming job leaves a gap that only a job ending in time may use', () => {
    const view = slotView([], 1, 0);
    // An upcoming critical job, ready at 10, books the free slot: it stays open until then.
    book({ host: 2, slot: 0, eft: 20, now: false, viaGap: false }, view, 10, 0);
    expect(view).toEqual([{ t: 20, gapEnd: 10 }]);
    expect(isOpen(view, 0)).toBe(true);
    const views = [null, null, view];
    expect(choose({ duration: 36, deadline: 100 }, [2], views, 0, 0, hosts)).toMatchObject({ now: true, viaGap: true, eft: 9 });
    expect(choose({ duration: 44, deadline: 100 }, [2], views, 0, 0, hosts)).toMatchObject({ now: false, viaGap: false, eft: 31 });
    book({ host: 2, slot: 0, eft: 9, now: true, viaGap: true }, view, 0, 0);
    expect(isOpen(view, 0)).toBe(false);
  });
});
