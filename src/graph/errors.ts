import { ExitCode, OffloadError } from '../errors/offloadError.js';

/** Derivations that (transitively) depend on themselves: no build order exists. */
export class DependencyCycleError extends OffloadError {
  /** The cycle in "depends on" direction; the first path is repeated at the end. */
  readonly cycle: string[];
  constructor(cycle: string[]) {
    super(`derivations depend on each other in a cycle, so none of them can be built first: ${cycle.join(' → ')}.`, ExitCode.badInput);
    this.cycle = cycle;
  }
}

/** An input derivation that the loaded set does not contain. */
export class MissingDerivationError extends OffloadError {
  readonly drvPath: string;
  readonly referencedBy: string | undefined;
  constructor(drvPath: string, referencedBy: string | undefined) {
    const source = referencedBy === undefined ? 'a requested root' : `an input of ${referencedBy}`;
    super(`derivation ${drvPath}, ${source}, is not among the loaded derivations.`, ExitCode.badInput);
    this.drvPath = drvPath;
    this.referencedBy = referencedBy;
  }
}
