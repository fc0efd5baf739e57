import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * The server went away in the middle of a command (SSH channel closed,
 * `nix-store --serve` killed or crashed) or had already gone before it.
 * The command's outcome is unknown; the executor requeues the job.
 */
export class ServeConnectionLostError extends OffloadError {
  constructor(
    message: string,
    readonly host: string,
    options?: { cause?: unknown },
  ) {
    super(message, ExitCode.hostsUnusable, options);
  }
}
