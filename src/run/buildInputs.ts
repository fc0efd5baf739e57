import type { Derivation } from '../drv/derivation.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * The store paths a derivation reads: its input sources plus the outputs it
 * uses from each input derivation. A builder receives the derivation with
 * these as its `inputSrcs` (as Nix's build-remote does), so it needs no
 * `.drv` files, only these paths and their closure.
 */
export function buildInputs(drv: Derivation, drvs: ReadonlyMap<string, Derivation>): string[] {
  const inputs = new Set(drv.inputSrcs);
  for (const [inputDrvPath, outputNames] of Object.entries(drv.inputDrvs)) {
    const input = drvs.get(inputDrvPath);
    if (!input) throw new OffloadError(`${drv.drvPath} needs ${inputDrvPath}, which is not among the loaded derivations.`, ExitCode.badInput);
    for (const name of outputNames) {
      const out = input.outputs[name];
      if (!out) throw new OffloadError(`${drv.drvPath} uses output "${name}" of ${inputDrvPath}, which has no such output.`, ExitCode.badInput);
      inputs.add(out.path);
    }
  }
  return [...inputs].sort();
}

/** The derivation as sent to a builder: inputs flattened into `inputSrcs`, no `inputDrvs`. */
export function basicDerivation(drv: Derivation, drvs: ReadonlyMap<string, Derivation>): Derivation {
  return { ...drv, inputSrcs: buildInputs(drv, drvs), inputDrvs: {} };
}

/** The outputs of `drv` that `consumer` reads. */
export function usedOutputs(consumer: Derivation, drv: Derivation): string[] {
  return (consumer.inputDrvs[drv.drvPath] ?? []).flatMap((name) => {
    const out = drv.outputs[name];
    return out ? [out.path] : [];
  });
}

export function outputPaths(drv: Derivation): string[] {
  return Object.values(drv.outputs).map((o) => o.path);
}

/** Content-addressed (floating or deferred) outputs have no path until built. */
export function assertInputAddressed(drvs: Iterable<Derivation>): void {
  for (const drv of drvs) {
    const floating = Object.entries(drv.outputs).filter(([, o]) => o.path === '');
    if (floating.length > 0) {
      throw new OffloadError(
        `${drv.drvPath} has content-addressed output${floating.length > 1 ? 's' : ''} ${floating.map(([n]) => n).join(', ')}; content-addressed derivations are not supported yet.`, ExitCode.badInput,
      );
    }
  }
}
