import { Readable } from 'node:stream';

/** Splits `bytes` at the given cut points and serves them from a Readable that then ends. */
export function chunked(bytes: Buffer, cuts: number[] = []): Readable {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    if (point > start) chunks.push(bytes.subarray(start, point));
    start = Math.max(start, point);
  }
  return Readable.from(chunks, { objectMode: false });
}
