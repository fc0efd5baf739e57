import type { Derivation } from './derivation.js';

/**
 * A cycle through inputDrvs among `drvs` (edges to derivations outside the
 * map are ignored), as paths in "depends on" order with the first repeated at
 * the end; undefined when there is none. Iterative depth-first search, so a
 * long chain cannot overflow the stack. Real stores cannot hold such a cycle
 * (a path's name hashes its inputs), but a hand-made JSON file can, and no
 * derivation on it could ever be built first.
 */
export function findInputCycle(drvs: ReadonlyMap<string, Derivation>): string[] | undefined {
  const onPath = new Map<string, number>();
  const done = new Set<string>();
  for (const start of drvs.keys()) {
    if (done.has(start)) continue;
    const path: string[] = [start];
    const pending: string[][] = [inputsOf(drvs, start)];
    onPath.set(start, 0);
    while (path.length > 0) {
      const next = pending.at(-1)!.pop();
      if (next === undefined) {
        const finished = path.pop()!;
        pending.pop();
        onPath.delete(finished);
        done.add(finished);
        continue;
      }
      if (done.has(next)) continue;
      const at = onPath.get(next);
      if (at !== undefined) return [...path.slice(at), next];
      onPath.set(next, path.length);
      path.push(next);
      pending.push(inputsOf(drvs, next));
    }
  }
  return undefined;
}

function inputsOf(drvs: ReadonlyMap<string, Derivation>, drvPath: string): string[] {
  return Object.keys(drvs.get(drvPath)!.inputDrvs)
    .filter((input) => drvs.has(input))
    .reverse();
}
