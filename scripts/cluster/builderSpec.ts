/**
 * What one test builder models: its name (an ssh_config alias), slots, the
 * systems it can build and the features it offers. The default cluster mirrors
 * a small real fleet so placement rules can be tested against real sshd + Nix.
 */
export interface BuilderSpec {
  name: string;
  /** Build slots advertised in the machines files (default 2). */
  maxJobs?: number;
  /** First entry is the builder's own system; the rest become `extra-platforms`. */
  systems?: string[];
  /** `system-features` in the builder's nix.conf and supportedFeatures in the machines files. */
  features?: string[];
  mandatoryFeatures?: string[];
  speedFactor?: number;
  /**
   * Binary caches the builder may substitute from (e.g. `http://127.0.0.1:PORT`
   * for the builders-use-substitutes test). Without them `substituters =` is empty.
   */
  substituters?: string[];
  /** Keys that sign the substituters' paths; without them `require-sigs = false`. */
  trustedPublicKeys?: string[];
  /** sshd MaxSessions (channels per connection); default 64. OpenSSH's own default is 10. */
  maxSessions?: number;
  /** sshd AllowTcpForwarding (default false): a builder that is also a jump host (ProxyJump) needs it. */
  allowTcpForwarding?: boolean;
  /**
   * sshd LogLevel (default VERBOSE: logins). DEBUG1 also records every
   * forwarded connection ("server_request_direct_tcpip: … target 127.0.0.1
   * port N") and every signal a client sends ("session_signal_req: signal INT").
   */
  sshdLogLevel?: 'VERBOSE' | 'DEBUG1';
  /**
   * sshd ForceCommand: every session runs this instead of what the client
   * asked for (`$SSH_ORIGINAL_COMMAND` holds that). For builders that must
   * misbehave: a wrapper around `nix-store --serve` that alters what it sends.
   */
  forceCommand?: string;
  /** Put the builder's /nix/store on a tmpfs of this size (MiB), e.g. to test a nearly full store. */
  storeSizeMiB?: number;
  /**
   * Name of a signing key (e.g. `ruby-1`) the builder's Nix signs every path
   * it builds with (`secret-key-files`); without it the builder signs nothing.
   */
  signingKeyName?: string;
  /**
   * How that key signs: Nix itself as it builds (`secret-key-files`, the
   * default), or a post-build-hook that runs `nix store sign` on the
   * outputs after each build.
   */
  signWith?: 'secret-key-files' | 'post-build-hook';
  /**
   * What the builder reads in /proc/pressure and /proc/loadavg. Every test
   * builder shares this machine's kernel, so by default (`idle`) it is shown
   * an idle machine of its own, as a real builder would be while other tests
   * load this one; `shared` leaves this machine's own figures, for a test
   * that drives them (a CPU hog).
   */
  pressure?: 'idle' | 'shared';
}

/** A builder spec with every default filled in. */
export type ResolvedBuilderSpec = Required<Omit<BuilderSpec, 'substituters' | 'trustedPublicKeys' | 'forceCommand' | 'storeSizeMiB' | 'signingKeyName' | 'signWith'>> &
  Pick<BuilderSpec, 'substituters' | 'trustedPublicKeys' | 'forceCommand' | 'storeSizeMiB' | 'signingKeyName' | 'signWith'>;

/** The Nix system string of this machine, which every test builder can build natively. */
export function hostSystem(): string {
  const arch = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i686' }[process.arch as string] ?? process.arch;
  return `${arch}-${process.platform}`;
}

/** aquamarine: the big one; ruby: plain; kana: the only aarch64-linux and kvm host. */
export function defaultBuilders(): BuilderSpec[] {
  const native = hostSystem();
  return [
    { name: 'aquamarine', maxJobs: 3, systems: [native], features: ['benchmark', 'big-parallel'] },
    { name: 'ruby', maxJobs: 2, systems: [native], features: [] },
    {
      name: 'kana',
      maxJobs: 2,
      systems: [native, 'aarch64-linux'],
      features: ['benchmark', 'big-parallel', 'kvm', 'nixos-test'],
    },
  ];
}

/** `n` builders: the default three first, then plain ones named builder4, builder5, ... */
export function builderSpecs(count: number): BuilderSpec[] {
  const defaults = defaultBuilders();
  const extra = Array.from({ length: Math.max(0, count - defaults.length) }, (_, i) => ({
    name: `builder${defaults.length + i + 1}`,
    maxJobs: 2,
    systems: [hostSystem()],
    features: [],
  }));
  return [...defaults, ...extra].slice(0, count);
}

const NAME = /^[a-z][a-z0-9-]{0,30}$/;

export function resolveBuilderSpec(spec: BuilderSpec): ResolvedBuilderSpec {
  if (!NAME.test(spec.name)) {
    throw new Error(`test builder name "${spec.name}" must be lower-case letters, digits and dashes`);
  }
  return {
    name: spec.name,
    maxJobs: spec.maxJobs ?? 2,
    systems: spec.systems && spec.systems.length > 0 ? spec.systems : [hostSystem()],
    features: spec.features ?? [],
    mandatoryFeatures: spec.mandatoryFeatures ?? [],
    speedFactor: spec.speedFactor ?? 1,
    maxSessions: spec.maxSessions ?? 64,
    allowTcpForwarding: spec.allowTcpForwarding ?? false,
    sshdLogLevel: spec.sshdLogLevel ?? 'VERBOSE',
    forceCommand: spec.forceCommand,
    substituters: spec.substituters,
    trustedPublicKeys: spec.trustedPublicKeys,
    storeSizeMiB: spec.storeSizeMiB,
    signingKeyName: spec.signingKeyName,
    signWith: spec.signWith,
    pressure: spec.pressure ?? 'idle',
  };
}
