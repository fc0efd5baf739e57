import type { PressureLimitOverrides } from './machineSpec.js';

/** One build machine, normalised from any of the accepted formats. */
export interface Machine {
  /** Name as written in the machines file (an ssh_config alias or a real host). */
  hostName: string;
  /** Where to connect after ssh_config resolution. */
  address: string;
  port: number;
  sshUser?: string;
  sshKey?: string;
  systems: string[];
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  maxJobs: number;
  speedFactor: number;
  /** Base64 of the host's public key line (as in Nix's machines file). */
  publicHostKey?: string;
  /** From ssh_config StrictHostKeyChecking: accept unknown host keys. */
  acceptUnknownHostKey?: boolean;
  /**
   * Every private key ssh would offer, in order (machines-file key first, then
   * ssh_config IdentityFile); `sshKey` is the first. Absent when none is configured.
   */
  identityFiles?: string[];
  /** From ssh_config UserKnownHostsFile, expanded; absent = ssh's default (~/.ssh/known_hosts). */
  userKnownHostsFiles?: string[];
  /** Where the machine was written: "file:line", "--builders entry N", "FILE machines[N]". */
  origin?: string;
  pressure?: PressureLimitOverrides;
}

/** Settings for the local machine and the run. */
export interface LocalSettings {
  /** Local build slots; 0 = never build locally (except builtin: derivations). */
  maxJobs: number;
  /** Local machine's speed relative to the reference builder. */
  speedFactor: number;
  systems: string[];
  supportedFeatures: string[];
  buildersUseSubstitutes: boolean;
  /** Seconds a build may print nothing before it is stopped (Nix's max-silent-time); 0 = no limit. */
  maxSilentTime: number;
  /** Seconds a build may run (Nix's timeout); 0 = no limit. */
  buildTimeout: number;
  /** Where each value came from: a flag, the offload machines file, a nix.conf line, NIX_CONFIG or "default". */
  origins: { [K in 'maxJobs' | 'speedFactor' | 'systems' | 'supportedFeatures' | 'buildersUseSubstitutes' | 'maxSilentTime' | 'buildTimeout']: string };
}

export interface MachinesConfig {
  /** Which file (or string) the machines came from, for error messages. */
  source: string;
  machines: Machine[];
  local: LocalSettings;
  /** The `state` key of a JSON machines file: where runners share slots and history. */
  state?: { url: string; file: string };
  /** Things that were skipped or ignored while reading (a missing @include, an unevaluated Match). */
  warnings?: string[];
}
