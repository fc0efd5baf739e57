import { resolve } from 'node:path';
import type { Derivation } from '../drv/derivation.js';

/** A derivation the user asked for, with the outputs wanted; none named = nix-build's default (`out`). */
export interface WantedRoot {
  drvPath: string;
  outputs?: readonly string[];
}

/** One `result` symlink: where it goes and the output it points at. */
export interface OutLink {
  /** Absolute path of the symlink. */
  link: string;
  drvPath: string;
  output: string;
  /** The output's store path. */
  path: string;
}

/**
 * The links nix-build makes (src/nix-build/nix-build.cc): the Nth distinct
 * derivation, counted from 0 in the order asked for, gets the prefix
 * `result` (N = 0) or `result-<N+1>`; each wanted output adds `-<output>`
 * unless it is `out`. So `result`, `result-dev`, `result-2`, `result-2-man`.
 * A derivation asked for without outputs gets `out`, as nix-build does; one
 * that has no `out` gets all of its outputs (where nix-build would refuse).
 * Pure: no file is touched.
 */
export function outLinks(roots: readonly WantedRoot[], drvs: ReadonlyMap<string, Derivation>, outLink: string, cwd: string): OutLink[] {
  const counters = new Map<string, number>();
  const links: OutLink[] = [];
  const seen = new Set<string>();
  for (const root of roots) {
    const drv = drvs.get(root.drvPath);
    if (drv === undefined) continue;
    if (!counters.has(root.drvPath)) counters.set(root.drvPath, counters.size);
    const counter = counters.get(root.drvPath)!;
    const prefix = counter === 0 ? outLink : `${outLink}-${counter + 1}`;
    for (const output of wantedOutputs(root, drv)) {
      const path = drv.outputs[output]?.path;
      const link = resolve(cwd, output === 'out' ? prefix : `${prefix}-${output}`);
      if (path === undefined || path === '' || seen.has(link)) continue;
      seen.add(link);
      links.push({ link, drvPath: root.drvPath, output, path });
    }
  }
  return links;
}

function wantedOutputs(root: WantedRoot, drv: Derivation): readonly string[] {
  if (root.outputs !== undefined && root.outputs.length > 0) return root.outputs;
  return 'out' in drv.outputs ? ['out'] : Object.keys(drv.outputs);
}
