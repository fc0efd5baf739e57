import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * The shared state cannot be reached or used. Like psql, whose exit status is
 * 2 when the connection to the server goes bad, offload exits 2: a fleet must
 * never fall back silently to per-machine state, since that would break the
 * slot guarantee. In a file of its own, without the PostgreSQL client, so a
 * run on local state never loads `pg`.
 */
export class StateUnavailableError extends OffloadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.badInput, options);
  }
}
