import type { ResolvedBuilderSpec } from './builderSpec.js';

/**
 * Text of every file the test cluster writes. Pure, so the exact sshd and Nix
 * settings the integration tests rely on are visible in one place.
 */

export interface BuilderFiles {
  spec: ResolvedBuilderSpec;
  port: number;
  /** Absolute path of the builder's private host key. */
  hostKeyFile: string;
  /** `<type> <base64>` of the builder's public host key, without comment. */
  hostKeyLine: string;
  pidFile: string;
}

export interface ClusterPaths {
  dir: string;
  clientKey: string;
  authorizedKeys: string;
  knownHosts: string;
  sshConfig: string;
}

/**
 * MaxSessions: one channel per running job plus probes; OpenSSH's default of 10
 * is too low for a pool that multiplexes everything over one connection.
 * SetEnv: sessions must use the builder's own store directly (there is no
 * daemon socket in the private /nix). HOME points into the builder folder so
 * root's real ~/.bashrc (which bash sources for every ssh command) and
 * ~/.config/nix stay out of the builders: hermetic, and much faster.
 * UsePAM no + StrictModes no: root in a throw-away folder, no login stack.
 */
export function sshdConfig(b: BuilderFiles, paths: ClusterPaths, builderRoot: string): string {
  return [
    'ListenAddress 127.0.0.1',
    `Port ${b.port}`,
    `HostKey ${b.hostKeyFile}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    `AuthorizedKeysFile ${paths.authorizedKeys}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    `PidFile ${b.pidFile}`,
    'UseDNS no',
    `LogLevel ${b.spec.sshdLogLevel}`,
    `MaxSessions ${b.spec.maxSessions}`,
    'MaxStartups 64:30:128',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    `AllowTcpForwarding ${b.spec.allowTcpForwarding ? 'yes' : 'no'}`,
    ...(b.spec.forceCommand !== undefined ? [`ForceCommand ${b.spec.forceCommand}`] : []),
    `SetEnv NIX_REMOTE=local HOME=${builderRoot}/home`,
    '',
  ].join('\n');
}

/** Where a signing builder's secret key is, inside its namespace (its etc-nix folder, owner-only). */
export const SIGNING_KEY_FILE = '/etc/nix/signing-key.sec';

/** A signing builder's post-build-hook (BuilderSpec.signWith), next to the key. */
export const SIGN_HOOK_FILE = '/etc/nix/sign-after-build';

/**
 * The post-build-hook that signs each build's outputs with the builder's
 * key, as Nix's manual suggests for signing outside the build: Nix runs it
 * with nix-store --serve's environment (its PATH), once the outputs are
 * valid and before the build's result goes back to the client. Nix 2.8.0
 * hands it an empty OUT_PATHS, so then it signs every path in the store.
 */
export function signHookScript(): string {
  const sign = `nix --extra-experimental-features nix-command store sign --key-file ${SIGNING_KEY_FILE}`;
  return ['#!/bin/sh', 'set -eu', `if [ -n "\${OUT_PATHS:-}" ]; then exec ${sign} $OUT_PATHS; fi`, `exec ${sign} --all`, ''].join('\n');
}

/**
 * `build-users-group =` is essential: builders sharing the host's nixbld users
 * kill each other's builds (each store's cleanup SIGKILLs "its" build user).
 */
export function nixConf(spec: ResolvedBuilderSpec): string {
  const [, ...extraPlatforms] = spec.systems;
  const lines = [
    'build-users-group =',
    'sandbox = false',
    `max-jobs = ${spec.maxJobs}`,
    `system-features = ${spec.features.join(' ')}`,
    `extra-platforms = ${extraPlatforms.join(' ')}`,
  ];
  if (spec.substituters && spec.substituters.length > 0) {
    lines.push(`substituters = ${spec.substituters.join(' ')}`);
    if (spec.trustedPublicKeys && spec.trustedPublicKeys.length > 0) {
      lines.push(`trusted-public-keys = ${spec.trustedPublicKeys.join(' ')}`);
    } else {
      lines.push('require-sigs = false');
    }
  } else {
    lines.push('substituters =');
  }
  if (spec.signingKeyName !== undefined) {
    lines.push(spec.signWith === 'post-build-hook' ? `post-build-hook = ${SIGN_HOOK_FILE}` : `secret-key-files = ${SIGNING_KEY_FILE}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * HostKeyAlias makes OpenSSH look the key up under the builder's name instead of
 * `[127.0.0.1]:port`; that is also the name Nix writes into its temporary
 * known_hosts for a machines-file host key, so both `ssh` and Nix verify keys.
 */
export function sshConfig(builders: BuilderFiles[], paths: ClusterPaths): string {
  return builders
    .map((b) =>
      [
        `Host ${b.spec.name}`,
        '  HostName 127.0.0.1',
        `  Port ${b.port}`,
        '  User root',
        `  IdentityFile ${paths.clientKey}`,
        '  IdentitiesOnly yes',
        `  HostKeyAlias ${b.spec.name}`,
        `  UserKnownHostsFile ${paths.knownHosts}`,
        '  StrictHostKeyChecking yes',
        '  BatchMode yes',
        '',
      ].join('\n'),
    )
    .join('\n');
}

export function knownHosts(builders: BuilderFiles[]): string {
  return builders.map((b) => `${b.spec.name} ${b.hostKeyLine}\n`).join('');
}

/** What Nix and offload call `publicHostKey`: base64 of the public key line. */
export function publicHostKeyField(hostKeyLine: string): string {
  return Buffer.from(hostKeyLine, 'utf8').toString('base64');
}

/** offload's JSON machines file; hostName is the ssh_config alias. */
export function machinesJson(builders: BuilderFiles[], paths: ClusterPaths): string {
  const machines = builders.map((b) => ({
    hostName: b.spec.name,
    sshUser: 'root',
    sshKey: paths.clientKey,
    port: b.port,
    systems: b.spec.systems,
    supportedFeatures: b.spec.features,
    mandatoryFeatures: b.spec.mandatoryFeatures,
    maxJobs: b.spec.maxJobs,
    speedFactor: b.spec.speedFactor,
    publicHostKey: publicHostKeyField(b.hostKeyLine),
    // A builder that reads this machine's own PSI and load (pressure: 'shared') sees everything
    // running here, not its own work; the others read idle figures of their own (testCluster.ts),
    // so the default limits apply to them as to a real builder. Free space stays checked.
    ...(b.spec.pressure === 'shared' ? { pressure: { cpuSomeAvg10: null, memoryFullAvg10: null, ioSomeAvg10: null, load1: null } } : {}),
  }));
  return JSON.stringify(machines, null, 2) + '\n';
}

const orDash = (items: string[]): string => (items.length > 0 ? items.join(',') : '-');

/**
 * Nix's machines format. Nix 2.8 passes the URI's authority straight to `ssh`,
 * so `ssh://root@127.0.0.1:PORT` does not work; the hosts are the aliases and
 * Nix must be run with NIX_SSHOPTS="-F <dir>/ssh_config".
 */
export function nixMachines(builders: BuilderFiles[], paths: ClusterPaths): string {
  const header = [
    '# Test cluster for Nix\'s own build-remote hook. Use with:',
    `#   NIX_SSHOPTS="-F ${paths.sshConfig}" nix-build --builders @${paths.dir}/machines.nix ...`,
  ];
  const lines = builders.map((b) =>
    [
      `ssh://root@${b.spec.name}`,
      b.spec.systems.join(','),
      paths.clientKey,
      String(b.spec.maxJobs),
      String(b.spec.speedFactor),
      orDash(b.spec.features),
      orDash(b.spec.mandatoryFeatures),
      publicHostKeyField(b.hostKeyLine),
    ].join(' '),
  );
  return [...header, ...lines, ''].join('\n');
}
