import { OffloadError } from '../errors/offloadError.js';
import { buildFailureKind, isSuccess, isTransient, type BuildFailureKind, type BuildResult } from '../remote/buildResult.js';
import { ServeConnectionLostError } from '../remote/serveClient.js';
import { storeRefusal } from '../remote/storeRefusal.js';
import { LOCAL_HOST, type JobAction } from '../schedule/types.js';
import { UntrustedReplyError } from '../remote/untrustedReplyError.js';
import type { HostFailureKind } from './hostHealth.js';
import { MissingPathError } from './transfers.js';
import {
  AuthenticationError,
  ChannelOpenError,
  ConnectionLostError,
  HostKeyMismatchError,
  HostUnreachableError,
  JumpHostError,
  ProxyCommandError,
  UnknownHostKeyError,
} from '../remote/sshErrors.js';

/**
 * Every way a job attempt can end, classified in one place so the executor
 * only decides what to do with each kind (and the fault matrix can grow here):
 * - `built`: outputs exist on the host.
 * - `buildFailed`: the builder ran it and it failed for good; dependents are skipped.
 * - `transient`: the builder says it may work next time; retried a few times.
 * - `connectionLost`: the channel or connection died mid-job, or an input's
 *   only copy went with a builder that died; the job is requeued (on
 *   whichever host fits, after the input's producer when it must run
 *   again), the build itself is not to blame.
 * - `hostUnusable`: the host cannot be connected to; it counts against the
 *   host (see hostHealth.ts) and the job is requeued.
 * - `refused`: a store refused a path or a build for a reason trying again
 *   cannot change (a missing signature, a full disk, a user outside
 *   trusted-users); fails the job at once, nothing is rebuilt.
 * - `jobError`: something about this job broke outside the build (an input
 *   that cannot be found or copied); fails the job.
 * - `interrupted`: the run was cancelled (SIGINT/SIGTERM) while it ran.
 */
export type Attempt =
  | { kind: 'built' }
  /** `failure`: how it counts in Nix's exit status (100 + flags). */
  | { kind: 'buildFailed'; message: string; failure: BuildFailureKind }
  | { kind: 'transient'; message: string }
  | { kind: 'connectionLost'; message: string }
  /** `host`: the machine that could not be used, which may be an input's source rather than the job's host. */
  | { kind: 'hostUnusable'; message: string; failure: HostFailureKind; host: string }
  | { kind: 'refused'; message: string }
  | { kind: 'jobError'; message: string }
  | { kind: 'interrupted' };

export function classifyBuildResult(result: BuildResult): Attempt {
  if (isSuccess(result.status)) return { kind: 'built' };
  const message = `${result.statusName}${result.errorMsg ? `: ${result.errorMsg.trim()}` : ''}`;
  return isTransient(result.status) ? { kind: 'transient', message } : { kind: 'buildFailed', message, failure: buildFailureKind(result) };
}

/** Anything that is not an OffloadError is a bug and is rethrown by the caller. */
export function classifyError(error: unknown, interrupted: boolean): Attempt | undefined {
  if (interrupted) return { kind: 'interrupted' };
  const refused = refusalOf(error);
  if (refused !== undefined) return { kind: 'refused', message: refused };
  if (
    error instanceof ServeConnectionLostError ||
    error instanceof ConnectionLostError ||
    error instanceof ChannelOpenError ||
    (error instanceof MissingPathError && error.lost)
  ) {
    return { kind: 'connectionLost', message: error.message };
  }
  if (isHostError(error)) return { kind: 'hostUnusable', message: error.message, failure: hostFailureKind(error), host: error.host };
  // A builder that lied is not asked again in this run; the job goes elsewhere.
  if (error instanceof UntrustedReplyError) return { kind: 'hostUnusable', message: error.message, failure: 'refused', host: error.host };
  if (error instanceof OffloadError) return { kind: 'jobError', message: error.message };
  return undefined;
}

/** A store's refusal that retrying cannot change, as one sentence naming the store and the fix. */
function refusalOf(error: unknown): string | undefined {
  if (!(error instanceof ServeConnectionLostError)) return undefined;
  const refusal = storeRefusal(error.serverError);
  if (refusal === undefined) return undefined;
  const store = error.host === LOCAL_HOST ? 'the local store' : `the store on ${error.host}`;
  return `${store} refused it for good (not retried): ${refusal.reason}${refusal.fix !== undefined ? `; to fix this, ${refusal.fix}` : ''}`;
}

/** What a failed job was doing, for the one line that reports it: `building X on H`, `copying the outputs of X from H`. */
export function failedJob(job: { action?: JobAction | undefined; jobId: string; host: string; from?: string | undefined }): string {
  if (job.action === 'fetch') return `fetching the outputs of ${job.jobId}`;
  if (job.action === 'copy') return `copying the outputs of ${job.jobId} from ${job.from ?? 'a builder'}`;
  return `building ${job.jobId} on ${job.host}`;
}

/** Matches the start of failedJob's line as the executor logs it. */
export const FAILED_JOB_LINE = /^offload: (building \S+ on \S+|copying the outputs of \S+ from \S+|fetching the outputs of \S+) failed: /;

export function isHostError(
  error: unknown,
): error is HostUnreachableError | HostKeyMismatchError | UnknownHostKeyError | AuthenticationError | JumpHostError | ProxyCommandError {
  return (
    error instanceof HostUnreachableError ||
    error instanceof JumpHostError ||
    error instanceof ProxyCommandError ||
    error instanceof HostKeyMismatchError ||
    error instanceof UnknownHostKeyError ||
    error instanceof AuthenticationError
  );
}

/** How much a host is to blame for an error that made it unusable (hostHealth.ts acts on it). */
export function hostFailureKind(error: unknown): HostFailureKind {
  // A jump host that refuses its key or login makes the builder behind it refused too.
  if (error instanceof JumpHostError) return hostFailureKind(error.hopError);
  if (error instanceof ProxyCommandError) return 'unreachable';
  if (error instanceof HostKeyMismatchError || error instanceof UnknownHostKeyError || error instanceof AuthenticationError) return 'refused';
  if (error instanceof HostUnreachableError) return 'unreachable';
  if (error instanceof ConnectionLostError && error.hung) return 'unreachable';
  return 'lost';
}

export interface RetryLimits {
  /** Further attempts after a transient build failure. */
  transientRetries: number;
  /** Further attempts after lost connections (each may land on another host). */
  connectionRetries: number;
}

export const defaultRetryLimits: RetryLimits = { transientRetries: 3, connectionRetries: 3 };

/** What the executor does next with a job after an attempt that did not build it. */
export type Decision = 'requeue' | 'fail';

export function decide(attempt: Attempt, counts: { transient: number; connectionLost: number }, limits: RetryLimits): Decision {
  switch (attempt.kind) {
    case 'transient':
      return counts.transient <= limits.transientRetries ? 'requeue' : 'fail';
    case 'connectionLost':
      return counts.connectionLost <= limits.connectionRetries ? 'requeue' : 'fail';
    case 'hostUnusable':
      return 'requeue';
    default:
      return 'fail';
  }
}
