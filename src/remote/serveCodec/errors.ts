import { ExitCode, OffloadError } from '../../errors/offloadError.js';

/**
 * The peer sent bytes that do not follow the serve protocol (or an export
 * stream / NAR inside it). The connection cannot be trusted afterwards: the
 * framing is lost, so the client closes it.
 */
export class ServeProtocolError extends OffloadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.hostsUnusable, options);
  }
}

/**
 * The byte stream ended in the middle of a value. Separate from malformed
 * data because, on a live connection, it means the server went away (the
 * client turns it into ServeConnectionLostError), while on a file or an
 * upload source it means the input was truncated.
 */
export class ServeStreamEndedError extends ServeProtocolError {}
