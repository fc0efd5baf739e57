/**
 * What the executor reports while it works, for the live view, NDJSON event
 * streams, Nix internal-json (nom) and the history database. Times are
 * seconds since the run started.
 */
export type RunEvent =
  | { type: 'jobStarted'; time: number; jobId: string; name: string; host: string; attempt: number }
  | { type: 'jobFinished'; time: number; jobId: string; name: string; host: string; status: 'built' | 'failed' | 'interrupted' | 'requeued'; seconds: number; error?: string }
  | { type: 'jobSkipped'; time: number; jobId: string; name: string; reason: string }
  | { type: 'hostDown'; time: number; host: string; reason: string }
  /** A host's back-off ended: it takes jobs again. */
  | { type: 'hostBack'; time: number; host: string }
  | { type: 'buildLog'; time: number; jobId: string; host: string; line: string };

export type RunEventListener = (event: RunEvent) => void;
