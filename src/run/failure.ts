import { OffloadError } from '../errors/offloadError.js';
import { isSuccess, isTransient, type BuildResult } from '../remote/buildResult.js';
import { ServeConnectionLostError } from '../remote/serveClient.js';
import {
  AuthenticationError,
  ChannelOpenError,
  ConnectionLostError,
  HostKeyMismatchError,
  HostUnreachableError,
  UnknownHostKeyError,
} from '../remote/sshErrors.js';

/**
 * Every way a job attempt can end, classified in one place so the executor
 * only decides what to do with each kind (and the fault matrix can grow here):
 * - `built`: outputs exist on the host.
 * - `buildFailed`: the builder ran it and it failed for good; dependents are skipped.
 * - `transient`: the builder says it may work next time; retried a few times.
 * - `connectionLost`: the channel or connection died mid-job; the job is
 *   requeued (on whichever host fits), the build itself is not to blame.
 * - `hostUnusable`: the host cannot be connected to at all; it is taken out
 *   of the run and the job requeued.
 * - `jobError`: something about this job broke outside the build (an input
 *   that cannot be found or copied); fails the job.
 * - `interrupted`: the run was cancelled (SIGINT/SIGTERM) while it ran.
 */
export type Attempt =
  | { kind: 'built' }
  | { kind: 'buildFailed'; message: string }
  | { kind: 'transient'; message: string }
  | { kind: 'connectionLost'; message: string }
  | { kind: 'hostUnusable'; message: string }
  | { kind: 'jobError'; message: string }
  | { kind: 'interrupted' };

export function classifyBuildResult(result: BuildResult): Attempt {
  if (isSuccess(result.status)) return { kind: 'built' };
  const message = `${result.statusName}${result.errorMsg ? `: ${result.errorMsg.trim()}` : ''}`;
  return isTransient(result.status) ? { kind: 'transient', message } : { kind: 'buildFailed', message };
}

/** Anything that is not an OffloadError is a bug and is rethrown by the caller. */
export function classifyError(error: unknown, interrupted: boolean): Attempt | undefined {
  if (interrupted) return { kind: 'interrupted' };
  if (error instanceof ServeConnectionLostError || error instanceof ConnectionLostError || error instanceof ChannelOpenError) {
    return { kind: 'connectionLost', message: error.message };
  }
  if (isHostError(error)) return { kind: 'hostUnusable', message: error.message };
  if (error instanceof OffloadError) return { kind: 'jobError', message: error.message };
  return undefined;
}

export function isHostError(error: unknown): error is OffloadError {
  return (
    error instanceof HostUnreachableError ||
    error instanceof HostKeyMismatchError ||
    error instanceof UnknownHostKeyError ||
    error instanceof AuthenticationError
  );
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
