import { describe, expect, it } from 'vitest';
import { afterSwitch, DEFAULT_COMPRESSION_LIMITS, judgeDirection, startWatch, type CompressionLimits, type DirectionWatch, type FlowBytes } from '../../src/remote/compressionRule.js';
import { eventText } from '../../src/report/eventLines.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const limits: CompressionLimits = { windowBytes: 16 * MiB, minSaving: 0.03, probeAfterBytes: 1024 * MiB, probeAfterMs: 60_000, maxBackoff: 8 };

/** A direction as a test states it: compressing or not, its window's start, no looks behind it unless given. */
function at(compressing: boolean, since: FlowBytes, sinceMs = 0, more: Partial<DirectionWatch> = {}): DirectionWatch {
  return { ...startWatch(compressing, since, sinceMs), ...more };
}

describe('judgeDirection', () => {
  it('waits for a full window before judging', () => {
    const watch = at(true, { wire: 0, plain: 0 });
    // The same state, not a copy: nothing changes while a window fills.
    expect(judgeDirection(watch, { wire: 15 * MiB, plain: 15 * MiB }, 1_000, limits)).toEqual({ change: 'none', watch });
    expect((judgeDirection(watch, { wire: 15 * MiB, plain: 15 * MiB }, 1_000, limits) as { watch: DirectionWatch }).watch).toBe(watch);
  });

  it('stops compressing a window that deflate did not shrink (random bytes grow a little)', () => {
    const verdict = judgeDirection(at(true, { wire: 0, plain: 0 }), { wire: 16 * MiB + 2_000, plain: 16 * MiB }, 1_000, limits);
    expect(verdict).toMatchObject({ change: 'stop', plainBytes: 16 * MiB });
    expect(verdict.change === 'stop' && verdict.saving).toBeLessThan(0);
  });

  it('stops below the threshold and keeps compressing at it', () => {
    const plain = 100 * MiB;
    expect(judgeDirection(at(true, { wire: 0, plain: 0 }), { wire: plain * 0.98, plain }, 1_000, limits).change).toBe('stop');
    expect(judgeDirection(at(true, { wire: 0, plain: 0 }), { wire: plain * 0.97, plain }, 1_000, limits).change).toBe('none');
  });

  it('judges each window on its own: incompressible data after a compressible window stops it', () => {
    const first = judgeDirection(at(true, { wire: 0, plain: 0 }), { wire: 4 * MiB, plain: 16 * MiB }, 1_000, limits);
    // Worth it: the next window starts at the counts now.
    expect(first).toEqual({ change: 'none', watch: at(true, { wire: 4 * MiB, plain: 16 * MiB }, 1_000) });
    const since = first.change === 'none' ? first.watch.since : { wire: 0, plain: 0 };
    // Over the whole connection it still saves 37 %, but this window saved nothing.
    expect(judgeDirection(at(true, since), { wire: 20 * MiB, plain: 32 * MiB }, 1_000, limits).change).toBe('stop');
  });

  it('compresses again after enough uncompressed payload, not before', () => {
    const since = { wire: 100 * MiB, plain: 100 * MiB };
    expect(judgeDirection(at(false, since), { wire: 1100 * MiB, plain: 1100 * MiB }, 1_000, limits).change).toBe('none');
    expect(judgeDirection(at(false, since), { wire: 1124 * MiB, plain: 1124 * MiB }, 1_000, limits)).toEqual({ change: 'probe', plainBytes: 1024 * MiB });
  });

  it('on a slow link compresses again after a minute, once a window went by uncompressed', () => {
    const since = { wire: 0, plain: 0 };
    const watch = at(false, since, 1_000);
    expect(judgeDirection(watch, { wire: 20 * MiB, plain: 20 * MiB }, 60_000, limits).change).toBe('none');
    expect(judgeDirection(watch, { wire: 20 * MiB, plain: 20 * MiB }, 61_000, limits)).toEqual({ change: 'probe', plainBytes: 20 * MiB });
    // An idle link is not rekeyed for nothing.
    expect(judgeDirection(watch, { wire: 1 * MiB, plain: 1 * MiB }, 600_000, limits).change).toBe('none');
  });

  it.each([
    // failed looks behind it, uncompressed payload since it stopped, ms since, verdict
    [0, 1023 * MiB, 1_000, 'none'],
    [0, 1 * GiB, 1_000, 'probe'],
    [1, 1 * GiB, 1_000, 'none'],
    [1, 2 * GiB, 1_000, 'probe'],
    [2, 3 * GiB, 1_000, 'none'],
    [2, 4 * GiB, 1_000, 'probe'],
    [3, 8 * GiB, 1_000, 'probe'],
    // The back-off stops growing at maxBackoff (8x): a look every 8 GiB at most.
    [4, 8 * GiB, 1_000, 'probe'],
    [30, 8 * GiB, 1_000, 'probe'],
    [30, 8 * GiB - 1, 1_000, 'none'],
    // The time bound backs off alike: 60 s, 2 min, … 8 min at most.
    [1, 20 * MiB, 61_000, 'none'],
    [1, 20 * MiB, 120_000, 'probe'],
    [5, 20 * MiB, 479_000, 'none'],
    [5, 20 * MiB, 480_000, 'probe'],
  ] as const)('after %i looks that found nothing, %i bytes uncompressed in %i ms: %s', (failedProbes, plain, ms, verdict) => {
    const watch = at(false, { wire: 0, plain: 0 }, 0, { failedProbes });
    expect(judgeDirection(watch, { wire: plain, plain }, ms, limits).change).toBe(verdict);
  });

  it('a look that stops within its window counts as found nothing; one whose window compressed resets the count', () => {
    const start = at(true, { wire: 0, plain: 0 });
    // The connection's first window was not a look: stopping there starts no back-off.
    const stopped = afterSwitch(start, false, { wire: 16 * MiB, plain: 16 * MiB }, 100);
    expect(stopped).toEqual(at(false, { wire: 16 * MiB, plain: 16 * MiB }, 100));
    const looking = afterSwitch(stopped, true, { wire: 1040 * MiB, plain: 1040 * MiB }, 200);
    expect(looking).toMatchObject({ compressing: true, probing: true, failedProbes: 0 });
    const failed = afterSwitch(looking, false, { wire: 1056 * MiB, plain: 1056 * MiB }, 300);
    expect(failed).toMatchObject({ compressing: false, probing: false, failedProbes: 1 });
    const again = afterSwitch(afterSwitch(failed, true, { wire: 3104 * MiB, plain: 3104 * MiB }, 400), false, { wire: 3120 * MiB, plain: 3120 * MiB }, 500);
    expect(again.failedProbes).toBe(2);
    // A look whose window saved enough: compressing on, back-off gone.
    const found = judgeDirection(afterSwitch(again, true, { wire: 7216 * MiB, plain: 7216 * MiB }, 600), { wire: 7220 * MiB, plain: 7232 * MiB }, 700, limits);
    expect(found).toEqual({ change: 'none', watch: at(true, { wire: 7220 * MiB, plain: 7232 * MiB }, 700) });
  });

  /** Feeds `plain` bytes that shrink to `ratio` through the rule in 16 MiB steps, each switch applied at once; the payload between each stop and the next look. */
  function gapsBetweenLooks(parts: Array<{ plain: number; ratio: number }>): number[] {
    let counts = { wire: 0, plain: 0 };
    let watch = startWatch(true, counts, 0);
    const gaps: number[] = [];
    for (const { plain, ratio } of parts) {
      for (let sent = 0; sent < plain; sent += 16 * MiB) {
        counts = { wire: counts.wire + 16 * MiB * ratio, plain: counts.plain + 16 * MiB };
        const verdict = judgeDirection(watch, counts, 0, limits);
        if (verdict.change === 'none') watch = verdict.watch;
        else {
          if (verdict.change === 'probe') gaps.push(verdict.plainBytes / GiB);
          watch = afterSwitch(watch, verdict.change === 'probe', counts, 0);
        }
      }
    }
    return gaps;
  }

  it.each([
    ['50 GiB that never compresses: looks 1, 2, 4, 8, 8… GiB apart', [{ plain: 50 * GiB, ratio: 1.001 }], [1, 2, 4, 8, 8, 8, 8, 8]],
    [
      '10 GiB incompressible, 8 GiB that compress, 10 GiB incompressible: the look that finds data resets the back-off',
      [{ plain: 10 * GiB, ratio: 1 }, { plain: 8 * GiB, ratio: 0.5 }, { plain: 10 * GiB, ratio: 1 }],
      [1, 2, 4, 8, 1, 2, 4],
    ],
    [
      // The price of backing off: 2 GiB that compress between two looks 8 GiB apart go uncompressed.
      '10 GiB incompressible, 2 GiB that compress, 10 GiB incompressible: no look falls on the 2 GiB',
      [{ plain: 10 * GiB, ratio: 1 }, { plain: 2 * GiB, ratio: 0.5 }, { plain: 10 * GiB, ratio: 1 }],
      [1, 2, 4, 8],
    ],
  ] as const)('%s', (_name, parts, gaps) => {
    expect(gapsBetweenLooks(parts.map((p) => ({ ...p })))).toEqual(gaps);
  });

  it('defaults: 16 MiB windows, 3 %, a new look after 1 GiB or a minute, backing off to 8 GiB or 8 minutes', () => {
    expect(DEFAULT_COMPRESSION_LIMITS).toEqual(limits);
  });
});

describe('the linkCompression event line', () => {
  it('says which host stopped compressing which direction, and why', () => {
    expect(eventText({ type: 'linkCompression', time: 3, host: 'ruby', direction: 'download', compressing: false, plainBytes: 16.5 * MiB, saving: -0.0004 })).toBe(
      'ruby: stopped compressing downloads: zlib saved 0.0 % of 16.5 MiB, not worth its CPU',
    );
    expect(eventText({ type: 'linkCompression', time: 9, host: 'ruby', direction: 'upload', compressing: true, plainBytes: 1024 * MiB })).toBe(
      'ruby: compressing uploads again after 1024.0 MiB uncompressed, to see whether new data compresses',
    );
  });
});
