import { describe, expect, it } from 'vitest';
import { coalesce, SMALL_PIECE, WriteBatch } from '../../src/remote/writeBatch.js';

const piece = (length: number, fill: number) => Buffer.alloc(length, fill);

describe('coalesce', () => {
  it('merges each run of small pieces into one buffer and passes large pieces through uncopied', () => {
    const large = piece(8, 9);
    const pieces = [piece(2, 1), piece(3, 2), large, piece(1, 3), piece(4, 4), piece(2, 5)];
    const out = coalesce(pieces, 8);
    expect(out.map((b) => b.length)).toEqual([5, 8, 7]);
    expect(out[1]).toBe(large);
    expect(Buffer.concat(out).equals(Buffer.concat(pieces))).toBe(true);
  });

  it('leaves a lone small piece between large ones as it is', () => {
    const lone = piece(3, 1);
    const out = coalesce([piece(10, 0), lone, piece(10, 2)], 8);
    expect(out).toHaveLength(3);
    expect(out[1]).toBe(lone);
  });

  it('gives nothing for nothing, and one buffer for all small pieces', () => {
    expect(coalesce([], 8)).toEqual([]);
    const small = Array.from({ length: 300 }, (_, i) => piece(5, i % 256));
    const out = coalesce(small, 8);
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(Buffer.concat(small))).toBe(true);
  });
});

describe('WriteBatch', () => {
  it("gathers 300 small paths' headers and NARs into one write, in order, and starts empty again", () => {
    const batch = new WriteBatch();
    const expected: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const header = Buffer.from(`header ${i};`);
      const nar = piece(700, i % 256);
      batch.push(header);
      batch.push(nar);
      expected.push(header, nar);
    }
    batch.push(Buffer.alloc(0));
    expect(batch.bytes).toBe(Buffer.concat(expected).length);
    const out = batch.take();
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(Buffer.concat(expected))).toBe(true);
    expect(batch.bytes).toBe(0);
    expect(batch.take()).toEqual([]);
  });

  it('keeps file contents of SMALL_PIECE bytes or more as their own pieces', () => {
    const batch = new WriteBatch();
    const contents = piece(SMALL_PIECE, 7);
    batch.push(Buffer.from('header'));
    batch.push(contents);
    batch.push(Buffer.from('next header'));
    const out = batch.take();
    expect(out.map((b) => b.length)).toEqual([6, SMALL_PIECE, 11]);
    expect(out[1]).toBe(contents);
  });
});
