import type { Derivation } from './derivation.js';
import { compareNixStrings } from './nixOrder.js';

const NEEDS_ESCAPE = /["\\\n\r\t]/;
const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Prints a derivation as Nix writes `.drv` files: maps and sets in byte
 * order, no whitespace, no final newline. For a file Nix wrote,
 * `printDrv(parseDrv(text))` is the same text.
 */
export function printDrv(drv: Derivation): string {
  const outputs = sortedKeys(drv.outputs).map((name) => {
    const o = drv.outputs[name]!;
    return `(${str(name)},${str(o.path)},${str(o.hashAlgo)},${str(o.hash)})`;
  });
  const inputDrvs = sortedKeys(drv.inputDrvs).map(
    (path) => `(${str(path)},${strList(sortedSet(drv.inputDrvs[path]!))})`,
  );
  const env = sortedKeys(drv.env).map((key) => `(${str(key)},${str(drv.env[key]!)})`);
  return (
    `Derive([${outputs.join(',')}],[${inputDrvs.join(',')}],${strList(sortedSet(drv.inputSrcs))},` +
    `${str(drv.system)},${str(drv.builder)},${strList(drv.args)},[${env.join(',')}])`
  );
}

function str(s: string): string {
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(/["\\\n\r\t]/g, (c) => ESCAPES[c]!)}"` : `"${s}"`;
}

function strList(items: readonly string[]): string {
  return `[${items.map(str).join(',')}]`;
}

function sortedKeys(record: Record<string, unknown>): string[] {
  return Object.keys(record).sort(compareNixStrings);
}

function sortedSet(items: readonly string[]): string[] {
  return [...new Set(items)].sort(compareNixStrings);
}
