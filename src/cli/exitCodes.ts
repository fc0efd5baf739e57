import { ExitCode } from '../errors/offloadError.js';

/** The exit-code table shown in `--help` and the README; one source for both. Build failures are nix-build's. */
export const exitCodeHelp = `Exit codes (as nix-build's):
  ${ExitCode.ok}    success (plan computed / everything built)
  ${ExitCode.failed}    any other failure: a derivation fits no machine, machines unusable
       (unreachable, host key, login), retries used up, a copy that failed
  ${ExitCode.badInput}    bad input: usage, machines file, Nix settings, .drv file, key file;
       shared state (--state) unreachable
  ${ExitCode.buildFailed}  a derivation failed to build (dependents skipped)
  101  a build timed out (--timeout, --max-silent-time)
  102  a fixed-output derivation's hash did not match
  103  both of the above; in general 100 + 1 (timeout) + 2 (hash mismatch) + 4
       (not deterministic), as Nix adds them
  ${ExitCode.internal}   internal error in offload (please report it; --debug shows the stack)
  ${ExitCode.interrupted}  interrupted (SIGINT/SIGTERM)
  Nix evaluation failed: Nix's own exit code, after Nix's message (nothing was built)`;
