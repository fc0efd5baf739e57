import type { DerivationSet } from '../drv/derivation.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { WantedDerivation } from './installable.js';

/** A wanted output the derivation does not have (`hello.drv^doc` when hello has only `out`). */
export class UnknownOutputError extends OffloadError {
  constructor(from: string, drvPath: string, missing: readonly string[], has: readonly string[]) {
    const plural = missing.length === 1 ? 'output' : 'outputs';
    super(`${from}: the derivation ${drvPath} has no ${plural} ${missing.map((m) => JSON.stringify(m)).join(', ')} (its outputs: ${has.join(', ')}).`, ExitCode.badInput);
  }
}

/**
 * The roots in the order the user named them, each once, and the outputs
 * wanted of each: the union over every mention, `all` winning (nix-build
 * `-A a -A a.dev` wants a's default output and dev).
 */
export function rootsFromWanted(wanted: readonly WantedDerivation[]): { roots: string[]; rootOutputs: Map<string, string[]> } {
  const roots: string[] = [];
  const outputs = new Map<string, 'all' | Set<string>>();
  for (const w of wanted) {
    const before = outputs.get(w.drvPath);
    if (before === undefined) roots.push(w.drvPath);
    if (before === 'all' || w.outputs === 'all') outputs.set(w.drvPath, 'all');
    else outputs.set(w.drvPath, new Set([...(before ?? []), ...w.outputs]));
  }
  const rootOutputs = new Map<string, string[]>();
  for (const [drvPath, o] of outputs) if (o !== 'all') rootOutputs.set(drvPath, [...o]);
  return { roots, rootOutputs };
}

/** Every wanted output exists on its derivation; checked once the .drv files are read. */
export function checkWantedOutputs(set: DerivationSet, wanted: readonly WantedDerivation[]): void {
  for (const w of wanted) {
    if (w.outputs === 'all') continue;
    const drv = set.drvs.get(w.drvPath);
    if (drv === undefined) continue;
    const has = Object.keys(drv.outputs);
    const missing = w.outputs.filter((o) => !has.includes(o));
    if (missing.length > 0) throw new UnknownOutputError(w.from, w.drvPath, missing, has);
  }
}
