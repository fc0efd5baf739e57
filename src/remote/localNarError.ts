import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * A NAR that offload serialized itself from the local store's files
 * (store/narFromFiles.ts) is not the one the local store recorded for the
 * path: a file could not be read, the tree's size differs from the
 * path info's NAR size, or the receiving store refused the NAR's hash. The
 * path's files changed behind Nix's back (or the disk is failing); the
 * builder that received it is not to blame, and nothing was registered there.
 */
export class LocalNarError extends OffloadError {
  constructor(
    /** The store path whose files were read. */
    readonly path: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(
      `The local store's ${path} does not match what the store recorded for it: ${problem}. Its files changed after Nix registered it; check the store with \`nix-store --verify --check-contents\` (and \`--repair\`).`,
      ExitCode.failed,
      options,
    );
  }
}
