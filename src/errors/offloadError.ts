/**
 * Every error a user can hit is an OffloadError: it carries the exit code the
 * CLI returns and a one-sentence message that already says what was tried.
 * Anything else reaching the CLI is a bug and is reported as such.
 */
export const ExitCode = {
  ok: 0,
  /** Any failure that is not a build's, as in nix-build. */
  failed: 1,
  badInput: 2,
  /** Kinds of `failed`, named for the reader: exit 1 like every non-build failure in Nix. */
  noHostFits: 1,
  hostsUnusable: 1,
  /** A build failed (Nix's 100); `buildFailureExitCode` adds the flags for timeouts and hash mismatches. */
  buildFailed: 100,
  /** A bug in offload, not in the input. */
  internal: 70,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class OffloadError extends Error {
  /** One of ExitCode, or the code of a Nix command whose failure offload passes on (an evaluation error). */
  readonly exitCode: number;
  /** The exit code is explicit: a bug is `internal`, not bad input, and each thrower knows which it is. */
  constructor(message: string, exitCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** An error class whose every instance is the user's input at fault (exit 2): a file, a setting, an option. */
export class BadInputError extends OffloadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.badInput, options);
  }
}
