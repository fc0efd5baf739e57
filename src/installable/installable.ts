/**
 * What a user can name on the command line, as Nix's own tools take it:
 * nix-build's files and `-A` attributes, `nix build`'s flake references and
 * derivation paths with outputs.
 */

/** `^out,dev` / `!out` after a derivation: only these outputs are wanted; `^*` wants them all. */
export type OutputSelection = { kind: 'all' } | { kind: 'names'; names: string[] };

export type Installable =
  /** `.#hello`, `path:/dir#pkg^dev`, `nixpkgs#hello`, `github:o/r` (no fragment: the flake's default package). */
  | { kind: 'flake'; text: string; flakeRef: string; fragment: string | undefined; outputs: OutputSelection | undefined }
  /** `<nixpkgs>`: a lookup in NIX_PATH, evaluated like a file. */
  | { kind: 'lookupPath'; text: string; path: string }
  /**
   * A filesystem path, sorted out by what it leads to: a store derivation
   * (also through symlinks such as `./result.drv`), another store path (built
   * through its deriver), or a Nix expression file or directory.
   */
  | { kind: 'path'; text: string; path: string; outputs: OutputSelection | undefined };

/** nix-build's options for expression files: `-A ATTR`, `--arg NAME EXPR`, `--argstr NAME VALUE`, `-I PATH`. */
export interface ExpressionOptions {
  attrs: string[];
  args: Array<{ name: string; expr: string }>;
  argstrs: Array<{ name: string; value: string }>;
  includes: string[];
}

/** A derivation to build and the outputs of it the user wants (result links and printed paths follow them). */
export interface WantedDerivation {
  drvPath: string;
  /** Output names; `all` when every output is wanted (a bare `.drv` path, `^*`). */
  outputs: 'all' | string[];
  /** What the user typed that led here, for messages. */
  from: string;
}
