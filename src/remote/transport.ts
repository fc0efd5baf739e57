import type { Readable, Writable } from 'node:stream';

/**
 * A running `nix-store --serve --write`: over an SSH channel for a remote
 * builder, or a child process for the local store. The serve-protocol client
 * only needs these three streams, so both ends speak the same code.
 */
export interface ServeTransport {
  /** What we write to the server. */
  stdin: Writable;
  /** What the server writes back (the protocol). */
  stdout: Readable;
  /** Build logs and errors from the server. */
  stderr: Readable;
  /** Where this transport leads, for messages (`local` or a hostName). */
  readonly host: string;
  /**
   * An SSH channel: every write leaves as SSH packets of its own, so NAR
   * bytes are not written ahead of a full batch just because the channel
   * has taken everything so far (see ServeClient's IDLE_WRITE).
   */
  readonly packetPerWrite?: boolean;
  /** Ends the server process (closes the channel / kills the child). */
  close(): void;
  /**
   * After close, when the server has no command in progress: offload may
   * exit before the process has gone (a local child's own exit takes
   * 15-40 ms, measured, with nothing left to write).
   */
  detach?(): void;
}
