/**
 * Build result status codes, with Nix's names and numbers
 * (libstore/build-result.hh; they are sent as-is in the serve protocol, and
 * Nix only ever appends new ones).
 */
export enum BuildStatus {
  Built = 0,
  Substituted = 1,
  AlreadyValid = 2,
  PermanentFailure = 3,
  InputRejected = 4,
  OutputRejected = 5,
  TransientFailure = 6,
  /** No longer produced by Nix. */
  CachedFailure = 7,
  TimedOut = 8,
  MiscFailure = 9,
  DependencyFailed = 10,
  LogLimitExceeded = 11,
  NotDeterministic = 12,
  ResolvesToAlreadyValid = 13,
  NoSubstituters = 14,
}

/** What a builder reports after a build-derivation command. */
export interface BuildResult {
  status: BuildStatus;
  /** The status as a name; `Unknown(n)` for a code this version does not know. */
  statusName: string;
  /** Nix's message for a failure, without terminal colour codes; empty on success. */
  errorMsg: string;
  /** How often the build ran (0 when the outputs were already valid). */
  timesBuilt: number;
  isNonDeterministic: boolean;
  /** Unix seconds, as the builder's clock saw them; 0 when not reported. */
  startTime: number;
  stopTime: number;
  /**
   * Realisations of the built outputs (protocol minor ≥ 6): key is the
   * DrvOutput id (`sha256:<drv hash>!<output>`), value the realisation JSON.
   */
  builtOutputs: Map<string, string>;
}

const SUCCESS = new Set<number>([
  BuildStatus.Built,
  BuildStatus.Substituted,
  BuildStatus.AlreadyValid,
  BuildStatus.ResolvesToAlreadyValid,
]);

export function isSuccess(status: number): boolean {
  return SUCCESS.has(status);
}

/**
 * Failures worth trying again, on this or another builder. Follows Hydra's
 * queue runner, the main user of this protocol, which sets `canRetry` for
 * exactly these two: TransientFailure (Nix's "possibly transient") and
 * MiscFailure (an error outside the builder itself, e.g. the builder's
 * store or a lost daemon). TimedOut is not retried by Hydra either: the
 * build ran as long as it was allowed to and would likely do so again;
 * the same goes for LogLimitExceeded. Unknown codes are not retried, since
 * a future status could well be permanent.
 */
const TRANSIENT: readonly number[] = [BuildStatus.TransientFailure, BuildStatus.MiscFailure];

export function isTransient(status: number): boolean {
  return TRANSIENT.includes(status);
}

export function buildStatusName(status: number): string {
  const name = (BuildStatus as unknown as Record<number, string | undefined>)[status];
  return name ?? `Unknown(${status})`;
}

/**
 * How a failed build counts in Nix's exit status (libstore/build/worker.cc,
 * Worker::exitStatus): a permanent failure, a timeout (build or silence),
 * a fixed-output hash mismatch (OutputRejected with Nix's message), a
 * non-deterministic result; anything else (MiscFailure, InputRejected,
 * LogLimitExceeded, …) sets no flag, so alone it makes Nix exit 1.
 */
export type BuildFailureKind = 'failed' | 'timedOut' | 'hashMismatch' | 'notDeterministic' | 'other';

export function buildFailureKind(result: Pick<BuildResult, 'status' | 'errorMsg'>): BuildFailureKind {
  switch (result.status) {
    case BuildStatus.PermanentFailure:
      return 'failed';
    case BuildStatus.TimedOut:
      return 'timedOut';
    case BuildStatus.NotDeterministic:
      return 'notDeterministic';
    case BuildStatus.OutputRejected:
      return /hash mismatch/i.test(result.errorMsg) ? 'hashMismatch' : 'other';
    default:
      return 'other';
  }
}

/** Nix 2.8's messages for the failures build-paths reports with status 1 through a daemon. */
const FAILURE_MESSAGES: ReadonlyArray<readonly [RegExp, BuildStatus]> = [
  [/\btimed out after \d+ seconds/, BuildStatus.TimedOut],
  [/\bhash mismatch in fixed-output derivation\b/, BuildStatus.OutputRejected],
  [/\bkilled after writing more than \d+ bytes of log output\b/, BuildStatus.LogLimitExceeded],
  [/\bbuilder for '[^']*' failed (with exit code|due to signal)\b/, BuildStatus.PermanentFailure],
  [/\bdependenc(y|ies) couldn't be built\b/, BuildStatus.DependencyFailed],
];

/**
 * The BuildResult of a build-paths reply: 0, or Nix's exit status
 * (Worker::exitStatus: 100, plus 1 timed out, 2 hash mismatch, 4 not
 * deterministic) and its message. Through a nix-daemon Nix 2.8 sends 1
 * whatever failed, so then the message decides; an unknown one is a
 * MiscFailure, as the build-derivation path reports errors outside the
 * builder.
 */
export function buildResultFromExitStatus(status: number, message: string): BuildResult {
  const result = (code: BuildStatus): BuildResult => ({
    status: code,
    statusName: buildStatusName(code),
    errorMsg: message,
    timesBuilt: code === BuildStatus.Built ? 1 : 0,
    isNonDeterministic: code === BuildStatus.NotDeterministic,
    startTime: 0,
    stopTime: 0,
    builtOutputs: new Map(),
  });
  if (status === 0) return result(BuildStatus.Built);
  if (status >= 100 && status < 116) {
    const flags = status - 100;
    if (flags & 1) return result(BuildStatus.TimedOut);
    if (flags & 2) return result(BuildStatus.OutputRejected);
    if (flags & 4) return result(BuildStatus.NotDeterministic);
    return result(BuildStatus.PermanentFailure);
  }
  const known = FAILURE_MESSAGES.find(([pattern]) => pattern.test(message));
  return result(known ? known[1] : BuildStatus.MiscFailure);
}
