import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { pathNameProblem } from '../storePath/storePath.js';
import type { Installable, OutputSelection } from './installable.js';

/** Something on the command line that names nothing offload can build. */
export class InstallableSyntaxError extends OffloadError {
  constructor(readonly text: string, problem: string) {
    super(`cannot build ${JSON.stringify(text)}: ${problem}.`, ExitCode.badInput);
  }
}

/** `scheme:` at the start: a flake reference even without `#` (`path:/dir`, `github:owner/repo`). */
const URL_SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:/;
const LOOKUP_PATH = /^<[^<>]+>$/;

/**
 * Sorts one command-line argument by its syntax alone (pure); what a plain
 * path leads to is found out later, on the filesystem. The rules follow Nix:
 *
 * - `REF#ATTR` is a flake reference (`.#hello`, `path:/dir#pkg`,
 *   `nixpkgs#hello`), and so is `scheme:…` without a fragment;
 * - `<name>` is a NIX_PATH lookup, as nix-build takes it;
 * - anything else is a path (a `.nix` file or directory like nix-build, a
 *   `.drv`, a symlink to one, or an output path);
 * - `^out,dev` (and nix-build's older `!out`) after a derivation or flake
 *   attribute selects outputs; `^*` selects all of them.
 */
export function parseInstallable(text: string): Installable {
  if (text === '') throw new InstallableSyntaxError(text, 'it is empty');
  if (LOOKUP_PATH.test(text)) return { kind: 'lookupPath', text, path: text };
  const hash = text.indexOf('#');
  if (hash >= 0 || URL_SCHEME.test(text)) {
    const flakeRef = hash >= 0 ? text.slice(0, hash) : text;
    if (flakeRef === '') throw new InstallableSyntaxError(text, 'a flake reference goes before "#" (for example .#hello or nixpkgs#hello)');
    if (hash < 0) {
      const { base, outputs } = splitOutputs(text, flakeRef, ['^']);
      return { kind: 'flake', text, flakeRef: base, fragment: undefined, outputs };
    }
    const { base, outputs } = splitOutputs(text, text.slice(hash + 1), ['^']);
    return { kind: 'flake', text, flakeRef, fragment: base === '' ? undefined : base, outputs };
  }
  const legacy = text.lastIndexOf('!');
  // nix-build's `drv!out` only ever followed a .drv; other paths keep their `!`.
  const markers = legacy > 0 && text.slice(0, legacy).endsWith('.drv') ? ['^', '!'] : ['^'];
  const { base, outputs } = splitOutputs(text, text, markers);
  return { kind: 'path', text, path: base, outputs };
}

/** Splits `base^out,dev` at the last marker; without one (or with nothing before it) nothing is selected. */
function splitOutputs(text: string, value: string, markers: readonly string[]): { base: string; outputs: OutputSelection | undefined } {
  const at = Math.max(...markers.map((m) => value.lastIndexOf(m)));
  if (at <= 0) return { base: value, outputs: undefined };
  return { base: value.slice(0, at), outputs: parseOutputSelection(text, value.slice(at + 1)) };
}

export function parseOutputSelection(text: string, spec: string): OutputSelection {
  if (spec === '*') return { kind: 'all' };
  const names = spec.split(',');
  for (const name of names) {
    const problem = pathNameProblem(name);
    if (problem !== undefined) throw new InstallableSyntaxError(text, `the output name ${JSON.stringify(name)} ${problem}`);
  }
  return { kind: 'names', names: [...new Set(names)] };
}
