import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { Host, Job } from './types.js';

/** The fields of a job that decide where it may run. */
export type FitJob = Pick<Job, 'id' | 'system' | 'requiredFeatures' | 'isBuiltin' | 'action'>;

export function isTransfer(job: Pick<Job, 'action'>): boolean {
  return job.action !== undefined && job.action !== 'build';
}

/**
 * Slots a host offers a job of this kind. builtin: derivations (fetchurl and
 * friends) are executed by the local Nix itself, so local keeps a
 * builtin-only allowance of max(1, maxJobs) slots even with `max-jobs = 0`;
 * otherwise a build with max-jobs 0 and a single download could never finish.
 */
export function slotLimit(host: Host, isBuiltin: boolean): number {
  if (host.transferLane) return isBuiltin ? 0 : Math.max(0, host.maxJobs);
  if (isBuiltin) return host.isLocal ? Math.max(1, host.maxJobs) : 0;
  return Math.max(0, host.maxJobs);
}

function list(items: string[]): string {
  return items.join(', ');
}

/** Why `host` cannot build `job`, or null when it can. */
export function rejectionReason(host: Host, job: FitJob): string | null {
  if (isTransfer(job)) return host.transferLane ? null : 'fetches and copies run on the transfer lane';
  if (host.transferLane) return 'takes fetches and copies only';
  if (job.isBuiltin) {
    return host.isLocal ? null : 'builtin derivations run only on the local machine';
  }
  if (!host.systems.includes(job.system)) {
    if (host.systems.length === 0) return 'no systems';
    return `${host.systems.length === 1 ? 'system' : 'systems'} ${list(host.systems)} only`;
  }
  const offered = new Set([...host.supportedFeatures, ...host.mandatoryFeatures]);
  const missing = job.requiredFeatures.filter((f) => !offered.has(f));
  if (missing.length > 0) {
    return `lacks ${missing.length === 1 ? 'feature' : 'features'} ${list(missing)}`;
  }
  const required = new Set(job.requiredFeatures);
  const unwanted = host.mandatoryFeatures.filter((f) => !required.has(f));
  if (unwanted.length > 0) {
    return `only builds jobs that require ${list(unwanted)}`;
  }
  if (host.maxJobs <= 0) return 'max-jobs is 0';
  return null;
}

export function fits(host: Host, job: FitJob): boolean {
  return rejectionReason(host, job) === null;
}

/** No configured machine (local included) can build a derivation. */
export class NoHostFitsError extends OffloadError {
  readonly drvPath: string;
  readonly reasons: Array<{ host: string; reason: string }>;

  constructor(job: FitJob, reasons: Array<{ host: string; reason: string }>) {
    const why =
      reasons.length === 0
        ? 'no machines are configured'
        : reasons.map((r) => `${r.host}: ${r.reason}`).join('; ');
    super(
      `no machine can build ${job.id} (system ${job.system}, features {${list(job.requiredFeatures)}}): ${why}`,
      ExitCode.noHostFits,
    );
    this.drvPath = job.id;
    this.reasons = reasons;
  }
}

/** Throws NoHostFitsError for the first job no host can build. */
export function assertEveryJobFits(jobs: Iterable<FitJob>, hosts: Host[]): void {
  for (const job of jobs) {
    if (hosts.some((h) => fits(h, job))) continue;
    throw new NoHostFitsError(
      job,
      // The transfer lane is no machine: naming it beside real hosts would only confuse.
      hosts.filter((h) => !h.transferLane).map((h) => ({ host: h.id, reason: rejectionReason(h, job) ?? 'fits' })),
    );
  }
}
