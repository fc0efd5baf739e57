/** One output of a derivation, as in the ATerm `Derive(...)` output tuple. */
export interface DerivationOutput {
  /** Store path; empty for content-addressed floating or deferred outputs. */
  path: string;
  /** e.g. `sha256` or `r:sha256`; empty unless fixed-output / CA. */
  hashAlgo: string;
  /** Hex hash of a fixed-output derivation; empty otherwise. */
  hash: string;
}

/** The fields a `.drv` file or `nix show-derivation` JSON spells out. */
export interface DerivationFields {
  drvPath: string;
  outputs: Record<string, DerivationOutput>;
  /** Input derivations → the output names used from each. */
  inputDrvs: Record<string, string[]>;
  inputSrcs: string[];
  system: string;
  builder: string;
  args: string[];
  env: Record<string, string>;
}

/** A parsed derivation: the fields as written plus the facts the scheduler needs (from env or structured attrs). */
export interface Derivation extends DerivationFields {
  /** The name part of the `.drv` file name (after the hash, without `.drv`). */
  name: string;
  requiredSystemFeatures: string[];
  preferLocalBuild: boolean;
  allowSubstitutes: boolean;
  /** Every output has a fixed hash (a download). */
  isFixedOutput: boolean;
  /** `system` is `builtin` (e.g. builtin:fetchurl): Nix runs these locally. */
  isBuiltin: boolean;
  /** Parsed `__json` env when the derivation uses structured attrs. */
  structuredAttrs?: Record<string, unknown>;
}

/** The closure of derivations reachable from the requested roots. */
export interface DerivationSet {
  roots: string[];
  /**
   * The outputs wanted of a root (`drv^out`, nix-build's `-A pkg.dev`): only
   * these must be valid, come back and are printed. A root not listed wants
   * every output.
   */
  rootOutputs?: ReadonlyMap<string, readonly string[]>;
  drvs: Map<string, Derivation>;
}
