/** Pieces below this size are copied together with their small neighbours into one buffer. */
export const SMALL_PIECE = 4 * 1024;

/**
 * Bytes gathered for one write into a serve channel's input, across paths:
 * a request's header, NAR slices, the next request's header. Written as
 * they come, 300 small paths cost ~600 writes, and an SSH channel sends
 * one encrypted packet per write (ssh2 has no writev): ~100 ms of this
 * process's CPU for 200 KB. Gathered, runs of small pieces become one buffer
 * (a copy of a few KiB is cheaper than a packet or an iovec each) and large
 * pieces (file contents in 32-64 KiB chunks) pass through uncopied.
 */
export class WriteBatch {
  private pieces: Buffer[] = [];
  /** Bytes gathered since the last take. */
  bytes = 0;

  push(piece: Buffer): void {
    if (piece.length === 0) return;
    this.pieces.push(piece);
    this.bytes += piece.length;
  }

  /** What was gathered, small pieces merged, in order; the batch is empty afterwards. */
  take(): Buffer[] {
    const pieces = coalesce(this.pieces, SMALL_PIECE);
    this.pieces = [];
    this.bytes = 0;
    return pieces;
  }
}

/**
 * The same bytes in the same order, each run of consecutive pieces shorter
 * than `small` concatenated into one buffer; larger pieces stay as they are.
 */
export function coalesce(pieces: readonly Buffer[], small: number): Buffer[] {
  const out: Buffer[] = [];
  let runStart = 0;
  let runBytes = 0;
  const endRun = (end: number) => {
    if (end - runStart === 1) out.push(pieces[runStart]!);
    else if (end > runStart) out.push(Buffer.concat(pieces.slice(runStart, end), runBytes));
  };
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (piece.length < small) {
      runBytes += piece.length;
      continue;
    }
    endRun(i);
    out.push(piece);
    runStart = i + 1;
    runBytes = 0;
  }
  endRun(pieces.length);
  return out;
}
