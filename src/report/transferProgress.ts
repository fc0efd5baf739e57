import type { RunEvent } from '../run/runEvents.js';

/**
 * Follows transfer events and answers, for each store-path transfer still
 * moving: how far it is, how fast it goes now, and when it should end. Pure
 * (events in, state out at a given time), like ProgressTracker.
 */

export interface TransferState {
  transferId: number;
  from: string;
  to: string;
  paths: number;
  /** NAR bytes moved so far, and in all. */
  bytes: number;
  total: number;
  /** Seconds since it started. */
  elapsed: number;
  /** Bytes per second over the last few seconds; undefined until there is a measure. */
  rate?: number;
  /** Seconds left at that rate. */
  eta?: number;
}

interface Tracked {
  transferId: number;
  from: string;
  to: string;
  paths: number;
  total: number;
  startedAt: number;
  bytes: number;
  at: number;
  /** The rate is measured from the older of two checkpoints, so it follows changes within a few seconds and never jumps on one sample. */
  checkpoints: { time: number; bytes: number }[];
}

/** A checkpoint is taken at most this often; the rate spans one to two of these. */
const CHECKPOINT_S = 2;

export class TransferProgress {
  private readonly live = new Map<number, Tracked>();

  apply(event: RunEvent): void {
    switch (event.type) {
      case 'transferStarted':
        this.live.set(event.transferId, {
          transferId: event.transferId,
          from: event.from,
          to: event.to,
          paths: event.paths,
          total: event.bytes,
          startedAt: event.time,
          bytes: 0,
          at: event.time,
          checkpoints: [{ time: event.time, bytes: 0 }],
        });
        break;
      case 'transferProgress': {
        const t = this.live.get(event.transferId);
        if (!t) break;
        t.bytes = event.bytes;
        t.at = event.time;
        const last = t.checkpoints[t.checkpoints.length - 1]!;
        if (event.time - last.time >= CHECKPOINT_S) {
          t.checkpoints.push({ time: event.time, bytes: event.bytes });
          if (t.checkpoints.length > 2) t.checkpoints.shift();
        }
        break;
      }
      case 'transferFinished':
        this.live.delete(event.transferId);
        break;
      default:
        break;
    }
  }

  /** One transfer's state now, while it moves. */
  get(transferId: number, now: number): TransferState | undefined {
    const t = this.live.get(transferId);
    return t && stateOf(t, now);
  }

  /** Transfers moving for at least `minSeconds`, oldest first. */
  moving(now: number, minSeconds = 0): TransferState[] {
    return [...this.live.values()].filter((t) => now - t.startedAt >= minSeconds).map((t) => stateOf(t, now));
  }
}

function stateOf(t: Tracked, now: number): TransferState {
  const from = t.checkpoints[0]!;
  const span = t.at - from.time;
  const rate = span > 0 && t.bytes > from.bytes ? (t.bytes - from.bytes) / span : undefined;
  const state: TransferState = {
    transferId: t.transferId,
    from: t.from,
    to: t.to,
    paths: t.paths,
    bytes: t.bytes,
    total: t.total,
    elapsed: Math.max(0, now - t.startedAt),
  };
  if (rate !== undefined) {
    state.rate = rate;
    state.eta = Math.max(0, t.total - t.bytes) / rate;
  }
  return state;
}
