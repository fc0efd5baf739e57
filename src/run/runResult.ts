import type { Derivation } from '../drv/derivation.js';
import type { JobAction } from '../schedule/types.js';
import { ExitCode } from '../errors/offloadError.js';
import type { BuildFailureKind } from '../remote/buildResult.js';
import type { OutLink } from '../store/outLinks.js';
import { wantedOutputs } from '../graph/outputPaths.js';
import type { HostTrouble } from './hostHealth.js';

/** What happened to one job in a live run; times are seconds since the run started. */
/** `not-started`: the run stopped first (after a failure without --keep-going, or no host fits any more). */
/** `fetched` / `copied`: the outputs came from a cache / a builder; `fell-back`: a cache could not deliver, the derivation was built instead. */
export type JobStatus = 'pending' | 'running' | 'built' | 'fetched' | 'copied' | 'fell-back' | 'failed' | 'skipped' | 'interrupted' | 'not-started';

export interface JobRecord {
  drvPath: string;
  name: string;
  /** What the job does (default build). */
  action?: JobAction;
  /** Fetch and copy jobs: the paths, bytes and where from (cache URL or builder). */
  transfer?: { paths: string[]; bytes: number; from: string };
  /** Host of the last attempt (empty when it never started). */
  host: string;
  status: JobStatus;
  start?: number;
  end?: number;
  attempts: number;
  /** Why it failed or was skipped. */
  error?: string;
  /** For a failed build: how it counts in the exit status (a timeout, a hash mismatch, …). */
  failure?: BuildFailureKind;
  /** The last log lines of a failed build. */
  logTail?: string[];
  /** Input paths streamed to the host for the last attempt. */
  sent: string[];
  /** Input paths the host fetched from its own substituters. */
  substituted: string[];
}

export interface RunResult {
  records: JobRecord[];
  /** Wanted outputs of the requested roots that are in the local store: drvPath → output name → path. */
  outputs: Record<string, Record<string, string>>;
  makespan: number;
  interrupted: boolean;
  /** Jobs left unbuilt because no available host fits them any more, with the reason. */
  stuck?: { jobs: string[]; reason: string };
  /** Builders that failed during the run (connections, transient results), and whether they were taken out. */
  hosts?: HostTrouble[];
  /** Paths a cache failed to deliver; their derivations are built in a further pass. */
  fellBack?: string[];
  /** The `result` links made after a successful run, each a GC root. */
  outLinks?: OutLink[];
}

/** The wanted outputs of `roots` that `isLocal` says are in the local store: drvPath → output name → path. */
export function localRootOutputs(
  roots: readonly string[],
  drvs: ReadonlyMap<string, Derivation>,
  isLocal: (path: string) => boolean,
  rootOutputs?: ReadonlyMap<string, readonly string[]>,
): RunResult['outputs'] {
  const out: RunResult['outputs'] = {};
  for (const root of roots) {
    const drv = drvs.get(root);
    const entries = drv ? wantedOutputs(drv, rootOutputs?.get(root)).filter(([, path]) => isLocal(path)) : [];
    if (entries.length > 0) out[root] = Object.fromEntries(entries);
  }
  return out;
}

export function runFailed(result: RunResult): boolean {
  return result.records.some((r) => r.status === 'failed' || r.status === 'skipped') || result.stuck !== undefined;
}

/**
 * Nix's exit status for a run (Worker::exitStatus): 100 when a build failed,
 * plus 1 if one timed out, 2 for a hash mismatch, 4 for a non-deterministic
 * result; 1 when the run failed otherwise (an input that could not be
 * copied, retries used up, no host left); 0 when everything was built.
 */
export function runExitCode(result: RunResult): number {
  if (!runFailed(result)) return ExitCode.ok;
  const kinds = new Set(result.records.filter((r) => r.status === 'failed').map((r) => r.failure));
  const timedOut = kinds.has('timedOut');
  const hashMismatch = kinds.has('hashMismatch');
  let flags = 0;
  if (kinds.has('failed') || timedOut || hashMismatch) flags |= 0x04;
  if (timedOut) flags |= 0x01;
  if (hashMismatch) flags |= 0x02;
  if (kinds.has('notDeterministic')) flags |= 0x08;
  return flags === 0 ? ExitCode.failed : 0x60 | flags;
}

/** The end-of-run summary on stderr: counts per status, then a line per builder that had trouble. */
export function summaryLine(result: RunResult): string {
  const counts = new Map<JobStatus, number>();
  for (const r of result.records) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const parts = [...counts].map(([status, n]) => `${n} ${status}`);
  const lines = [`offload: ${parts.length > 0 ? parts.join(', ') : 'nothing to build'} in ${result.makespan.toFixed(1)} s`];
  for (const t of result.hosts ?? []) lines.push(`offload: ${hostTroubleLine(t)}`);
  return lines.join('\n');
}

function hostTroubleLine(t: HostTrouble): string {
  const failures = `${t.failures} failure${t.failures === 1 ? '' : 's'}`;
  const last = `last: ${t.reason}`;
  if (t.retired) return `${t.host} was taken out for the rest of the run (${failures}; ${last})`;
  if (t.timesOut === 0) return `${t.host} had ${failures} but stayed in rotation (${last})`;
  const times = t.timesOut === 1 ? 'once' : `${t.timesOut} times`;
  return `${t.host} was taken out of rotation ${times} (${failures}; ${last})${t.outAtEnd ? '; still out at the end' : '; back in rotation at the end'}`;
}
