import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * The server went away in the middle of a command (SSH channel closed,
 * `nix-store --serve` killed or crashed) or had already gone before it.
 * The command's outcome is unknown; the executor requeues the job, unless
 * `serverError` shows the server gave up for a reason retrying cannot
 * change (see storeRefusal.ts).
 */
export class ServeConnectionLostError extends OffloadError {
  constructor(
    message: string,
    readonly host: string,
    options?: { cause?: unknown; serverError?: string },
  ) {
    super(message, ExitCode.hostsUnusable, options);
    if (options?.serverError !== undefined) this.serverError = options.serverError;
  }

  /** Nix's last `error:` line on the server's stderr before it went away, if it printed one. */
  readonly serverError?: string;
}
