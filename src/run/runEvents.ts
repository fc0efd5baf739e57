import type { JobAction } from '../schedule/types.js';
import type { CompressionSwitch } from '../remote/adaptiveCompression.js';
import type { BuilderPressure } from '../remote/builderPressure.js';

/**
 * What the executor reports while it works, for the live view, NDJSON event
 * streams, Nix internal-json (nom) and the history database. Times are
 * seconds since the run started.
 */
export type RunEvent =
  | { type: 'jobStarted'; time: number; jobId: string; name: string; host: string; attempt: number; action?: JobAction }
  /**
   * `seconds`: the whole attempt; `buildSeconds`: the build itself on the
   * host; `transferSeconds`: moving its inputs there and its outputs back.
   */
  | {
      type: 'jobFinished';
      time: number;
      jobId: string;
      name: string;
      host: string;
      /** `fetched`/`copied`: a fetch or copy job's paths are here; `fell-back`: a cache could not deliver, so it is built instead. */
      status: 'built' | 'failed' | 'interrupted' | 'requeued' | 'fetched' | 'copied' | 'fell-back';
      seconds: number;
      buildSeconds?: number;
      transferSeconds?: number;
      error?: string;
      action?: JobAction;
      /** Fetch and copy jobs: bytes moved, and from where (a cache URL or a builder). */
      bytes?: number;
      from?: string;
    }
  | { type: 'jobSkipped'; time: number; jobId: string; name: string; reason: string }
  | { type: 'hostDown'; time: number; host: string; reason: string }
  /** A host's back-off ended: it takes jobs again. */
  | { type: 'hostBack'; time: number; host: string }
  | { type: 'buildLog'; time: number; jobId: string; host: string; line: string }
  /**
   * A look at a builder's own load: `reasons` lists the limits it is over
   * (then it gets no new job); `changed` when it became loaded or recovered.
   */
  | { type: 'hostPressure'; time: number; host: string; pressure: BuilderPressure; reasons: string[]; changed: boolean }
  /** A link compressed on request stopped compressing one direction (it saved nothing), or compresses it again to look at new data. */
  | ({ type: 'linkCompression'; time: number; host: string } & CompressionSwitch)
  /** Store paths start moving `from` one store `to` another; `bytes`: their NAR size in total. */
  | { type: 'transferStarted'; time: number; transferId: number; from: string; to: string; paths: number; bytes: number; jobId?: string }
  /** Bytes moved so far, a few times a second while a transfer runs. */
  | { type: 'transferProgress'; time: number; transferId: number; bytes: number; total: number }
  | { type: 'transferFinished'; time: number; transferId: number; from: string; to: string; bytes: number; seconds: number; error?: string };

export type RunEventListener = (event: RunEvent) => void;
