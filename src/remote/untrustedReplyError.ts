import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * A builder sent something this run did not ask for or that contradicts
 * itself: a path outside the requested closure, a path info for a path not
 * asked about, a NAR whose size or hash differs from its path info. The
 * transfer stops before the receiving store can register anything, and the
 * builder is not trusted again in this run.
 */
export class UntrustedReplyError extends OffloadError {
  constructor(
    readonly host: string,
    /** The store path the lie is about. */
    readonly path: string,
    problem: string,
  ) {
    super(`${host} cannot be trusted: ${problem} (${path}); nothing it sent was added to the store, and it takes no more jobs in this run.`, ExitCode.hostsUnusable);
  }
}
