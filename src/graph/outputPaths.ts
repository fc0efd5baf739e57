import type { Derivation, DerivationSet } from '../drv/derivation.js';

/** Every known output path of the set, each once: what to ask the store about. */
export function allOutputPaths(set: DerivationSet): string[] {
  const paths = new Set<string>();
  for (const drv of set.drvs.values()) for (const p of outputPathsOf(drv)) paths.add(p);
  return [...paths];
}

/** Known output paths of one derivation; floating content-addressed outputs have none yet. */
export function outputPathsOf(drv: Derivation): string[] {
  return Object.values(drv.outputs)
    .map((o) => o.path)
    .filter((p) => p !== '');
}

/** True when every output is already in the store. An unknown (content-addressed) path never is. */
export function allOutputsValid(drv: Derivation, validOutputs: ReadonlySet<string>): boolean {
  return Object.values(drv.outputs).every((o) => o.path !== '' && validOutputs.has(o.path));
}

/** The outputs of `drv` that are wanted: those named in `wanted` (unknown names are skipped), else all. */
export function wantedOutputs(drv: Derivation, wanted: readonly string[] | undefined): Array<[name: string, path: string]> {
  const all = Object.entries(drv.outputs).map(([name, o]) => [name, o.path] as [string, string]);
  return wanted === undefined ? all : all.filter(([name]) => wanted.includes(name));
}

/** True when every wanted output is already in the store. An unknown (content-addressed) path never is. */
export function wantedOutputsValid(drv: Derivation, wanted: readonly string[] | undefined, validOutputs: ReadonlySet<string>): boolean {
  return wantedOutputs(drv, wanted).every(([, path]) => path !== '' && validOutputs.has(path));
}
