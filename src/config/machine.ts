import type { MachineSpec } from './machineSpec.js';

/**
 * How the SSH connection to a host is carried: over a channel of an SSH
 * connection to a jump host (ProxyJump; that host may have its own proxy),
 * or over the stdin/stdout of a local command (ProxyCommand).
 */
export type SshProxy = { jump: SshEndpoint } | { command: string };

/** Everything needed to log in to one SSH host: a builder, or a jump host on the way to one. */
export interface SshEndpoint {
  /** Name as written (the machines file's host, or a ProxyJump hop): an ssh_config alias or a real host. */
  hostName: string;
  /** Where to connect after ssh_config resolution. */
  address: string;
  port: number;
  sshUser?: string;
  /** The machines file's key (expanded): explicit input, so it must exist and be private (checked before connecting). */
  sshKey?: string;
  /** Base64 of the host's public key line (as in Nix's machines file). */
  publicHostKey?: string;
  /** From ssh_config StrictHostKeyChecking: accept unknown host keys. */
  acceptUnknownHostKey?: boolean;
  /**
   * Every private key ssh would offer, in order (machines-file `sshKey` first,
   * then NIX_SSHOPTS -i, then ssh_config IdentityFile). Absent when none is
   * configured (ssh's defaults then). Only `sshKey` must be usable; the
   * others are skipped when they are not, as ssh skips them.
   */
  identityFiles?: string[];
  /** ssh_config IdentitiesOnly yes: only agent keys an identity file names. */
  identitiesOnly?: boolean;
  /** ssh_config IdentityAgent: a socket path or "none"; absent = SSH_AUTH_SOCK. */
  identityAgent?: string;
  /** From ssh_config Compression yes: the SSH link compresses (zlib). */
  compression?: boolean;
  /** From ssh_config UserKnownHostsFile, expanded; absent = ssh's default (~/.ssh/known_hosts, ~/.ssh/known_hosts2). */
  userKnownHostsFiles?: string[];
  /** From ssh_config GlobalKnownHostsFile; absent = /etc/ssh/ssh_known_hosts, /etc/ssh/ssh_known_hosts2. */
  globalKnownHostsFiles?: string[];
  /** ssh_config HostKeyAlias: the name host keys are looked up and recorded under. */
  hostKeyAlias?: string;
  /** ssh_config StrictHostKeyChecking, when set (yes and ask refuse unknown keys; accept-new and no record them). */
  strictHostKeyChecking?: 'yes' | 'ask' | 'accept-new' | 'no';
  /** ssh_config HashKnownHosts yes: record new keys under a hashed name. */
  hashKnownHosts?: boolean;
  /** ssh_config ProxyJump / ProxyCommand; absent: a direct TCP connection to address:port. */
  proxy?: SshProxy;
  /** ssh_config ConnectTimeout: this host's bound on connect, handshake and login (absent: the run's). */
  connectTimeoutMs?: number;
  /** ssh_config ServerAliveInterval (0: no keep-alives); absent: the run's. */
  keepaliveIntervalMs?: number;
  /** ssh_config ServerAliveCountMax; absent: the run's. */
  keepaliveCountMax?: number;
}

/**
 * One build machine, normalised from any of the accepted formats: the spec
 * as written, plus what ssh_config resolution found (an endpoint).
 */
export interface Machine extends MachineSpec, SshEndpoint {
  port: number;
  /** Where the machine was written: "file:line", "--builders entry N", "FILE machines[N]". */
  origin?: string;
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
  /** Nix's `store` setting (`$NIX_REMOTE`, nix.conf), which local Nix commands open: `auto`, `local`, `daemon`, a URL. */
  store: string;
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
