import { ExitCode } from '../errors/offloadError.js';

/** The exit-code table shown in `--help` and the README; one source for both. */
export const exitCodeHelp = `Exit codes:
  ${ExitCode.ok}    success (plan computed / everything built)
  ${ExitCode.buildFailed}    a derivation failed to build (dependents skipped)
  ${ExitCode.badInput}    bad input: usage, machines file, .drv file, key file
  ${ExitCode.noHostFits}    a derivation fits no configured machine
  ${ExitCode.hostsUnusable}    machines unusable: unreachable, wrong host key, authentication
  ${ExitCode.internal}   internal error in offload (please report it; --debug shows the stack)
  ${ExitCode.interrupted}  interrupted (SIGINT/SIGTERM)`;
