import type { Command } from 'commander';
import type { ExpressionOptions } from '../installable/installable.js';
import { splitTwoWords } from './twoWordOptions.js';

const collect = <T>(parse: (value: string) => T) => (value: string, previous: T[] = []) => [...previous, parse(value)];

export interface ExpressionCliOptions {
  attr?: string[];
  arg?: Array<[string, string]>;
  argstr?: Array<[string, string]>;
  include?: string[];
}

export function addExpressionOptions(cmd: Command): Command {
  return cmd
    .option('-A, --attr <attr>', 'attribute of a .nix file to build, as nix-build (repeatable)', collect(String))
    .option('--arg <name> <expr>', 'pass the Nix expression EXPR as argument NAME to the file’s function (repeatable)', collect(splitTwoWords('--arg', 'EXPR')))
    .option('--argstr <name> <value>', 'pass the string VALUE as argument NAME (repeatable)', collect(splitTwoWords('--argstr', 'VALUE')))
    .option('-I, --include <path>', 'add PATH to the Nix search path for <lookup> paths, as nix-build (repeatable)', collect(String));
}

export function expressionOptions(opts: ExpressionCliOptions): ExpressionOptions {
  return {
    attrs: opts.attr ?? [],
    args: (opts.arg ?? []).map(([name, expr]) => ({ name, expr })),
    argstrs: (opts.argstr ?? []).map(([name, value]) => ({ name, value })),
    includes: opts.include ?? [],
  };
}

/** What `offload build --help` and `plan --help` say about naming what to build. */
export const installablesHelp = `What to build, as Nix tools take it (no argument: ./default.nix, like nix-build):
  FILE.nix [-A ATTR]… [--arg NAME EXPR] [--argstr NAME VALUE]   a Nix file or directory, like nix-build
  .#pkg  path:/dir#pkg  nixpkgs#hello                           a flake's package, like nix build
  /nix/store/…-x.drv^out,dev   ./result.drv                     a derivation (only the outputs after ^)
  /nix/store/…-hello-2.12.1   ./result                          an output path, built through its deriver
Evaluation is Nix's own (nix-instantiate, nix eval): its errors are shown as Nix writes them,
offload exits with Nix's exit code, and nothing is built.`;
