import { BadInputError, ExitCode, OffloadError } from '../errors/offloadError.js';

/** A machines file (JSON or Nix format) or `--builders` string that cannot be used as written. */
export class MachinesFileError extends OffloadError {
  /** Every problem found, one line each; the message shows the first. */
  readonly problems: string[];
  constructor(problems: [string, ...string[]], options?: { cause?: unknown }) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    super(`${problems[0]}${more}`, ExitCode.badInput, options);
    this.problems = problems;
  }
}

/** An ssh_config file that cannot be read or gives a value ssh itself would reject. */
export class SshConfigError extends BadInputError {}

/** A private key file that ssh would refuse or cannot open. */
export class KeyFileError extends BadInputError {}

/** `--hosts` / `--exclude-hosts` naming a machine that is not configured. */
export class HostSelectionError extends BadInputError {}

/** Nix configuration (nix.conf, an include, NIX_CONFIG) that Nix itself would refuse. */
export class NixConfError extends BadInputError {}
