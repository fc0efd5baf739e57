import { describe, expect, it } from 'vitest';
import { DEFAULT_COMPRESSION_LIMITS, judgeDirection, type CompressionLimits } from '../../src/remote/compressionRule.js';
import { eventText } from '../../src/report/eventLines.js';

const MiB = 1024 * 1024;
const limits: CompressionLimits = { windowBytes: 16 * MiB, minSaving: 0.03, probeAfterBytes: 1024 * MiB, probeAfterMs: 60_000 };

describe('judgeDirection', () => {
  it('waits for a full window before judging', () => {
    const since = { wire: 0, plain: 0 };
    expect(judgeDirection({ compressing: true, since, sinceMs: 0 }, { wire: 15 * MiB, plain: 15 * MiB }, 1_000, limits)).toEqual({ change: 'none', since });
  });

  it('stops compressing a window that deflate did not shrink (random bytes grow a little)', () => {
    const verdict = judgeDirection({ compressing: true, since: { wire: 0, plain: 0 }, sinceMs: 0 }, { wire: 16 * MiB + 2_000, plain: 16 * MiB }, 1_000, limits);
    expect(verdict).toMatchObject({ change: 'stop', plainBytes: 16 * MiB });
    expect(verdict.change === 'stop' && verdict.saving).toBeLessThan(0);
  });

  it('stops below the threshold and keeps compressing at it', () => {
    const plain = 100 * MiB;
    expect(judgeDirection({ compressing: true, since: { wire: 0, plain: 0 }, sinceMs: 0 }, { wire: plain * 0.98, plain }, 1_000, limits).change).toBe('stop');
    expect(judgeDirection({ compressing: true, since: { wire: 0, plain: 0 }, sinceMs: 0 }, { wire: plain * 0.97, plain }, 1_000, limits).change).toBe('none');
  });

  it('judges each window on its own: incompressible data after a compressible window stops it', () => {
    const first = judgeDirection({ compressing: true, since: { wire: 0, plain: 0 }, sinceMs: 0 }, { wire: 4 * MiB, plain: 16 * MiB }, 1_000, limits);
    // Worth it: the next window starts at the counts now.
    expect(first).toEqual({ change: 'none', since: { wire: 4 * MiB, plain: 16 * MiB } });
    const since = first.change === 'none' ? first.since : { wire: 0, plain: 0 };
    // Over the whole connection it still saves 37 %, but this window saved nothing.
    expect(judgeDirection({ compressing: true, since, sinceMs: 0 }, { wire: 20 * MiB, plain: 32 * MiB }, 1_000, limits).change).toBe('stop');
  });

  it('compresses again after enough uncompressed payload, not before', () => {
    const since = { wire: 100 * MiB, plain: 100 * MiB };
    expect(judgeDirection({ compressing: false, since, sinceMs: 0 }, { wire: 1100 * MiB, plain: 1100 * MiB }, 1_000, limits)).toEqual({ change: 'none', since });
    expect(judgeDirection({ compressing: false, since, sinceMs: 0 }, { wire: 1124 * MiB, plain: 1124 * MiB }, 1_000, limits)).toEqual({ change: 'probe', plainBytes: 1024 * MiB });
  });

  it('on a slow link compresses again after a minute, once a window went by uncompressed', () => {
    const since = { wire: 0, plain: 0 };
    const watch = { compressing: false, since, sinceMs: 1_000 };
    expect(judgeDirection(watch, { wire: 20 * MiB, plain: 20 * MiB }, 60_000, limits).change).toBe('none');
    expect(judgeDirection(watch, { wire: 20 * MiB, plain: 20 * MiB }, 61_000, limits)).toEqual({ change: 'probe', plainBytes: 20 * MiB });
    // An idle link is not rekeyed for nothing.
    expect(judgeDirection(watch, { wire: 1 * MiB, plain: 1 * MiB }, 600_000, limits).change).toBe('none');
  });

  it('defaults: 16 MiB windows, 3 %, a new look after 1 GiB or a minute', () => {
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
