import { execFile } from 'node:child_process';
import { cpus } from 'node:os';
import type { MachineDefaults } from './knownSettings.js';
import { machineDefaultsKey, machineSources, readCachedDefaults, writeCachedDefaults } from './machineDefaultsCache.js';

/** Nix's name for the platform this process runs on (what `nix` calls builtins.currentSystem). */
export function nixSystemOf(arch: string, platform: string): string {
  const cpu: Record<string, string> = {
    x64: 'x86_64',
    arm64: 'aarch64',
    ia32: 'i686',
    arm: 'armv7l',
    riscv64: 'riscv64',
    ppc64: 'powerpc64le',
    s390x: 's390x',
    mips64el: 'mips64el',
    loong64: 'loongarch64',
  };
  return `${cpu[arch] ?? arch}-${platform}`;
}

/**
 * `system`, `extra-platforms` and `system-features` default to what Nix
 * finds on the machine: its compiled-in system, x86-64 micro-architecture
 * levels from CPUID (libcpuid), /dev/kvm being usable, and features that vary
 * between Nix versions. Only the installed Nix knows all of that, so it is
 * asked (`defaultValue` in `nix show-config --json`, which is the same
 * whatever the configuration says; no configuration is read, so a broken
 * nix.conf cannot get in the way). Without a working Nix, offload computes
 * what Nix 2.8 would on Linux, minus the micro-architecture levels.
 */
export async function machineDefaults(options: MachineDefaultsOptions = {}): Promise<MachineDefaults> {
  cached ??= options.cacheFile === undefined ? askNixOrCompute() : cachedOrAsked(options.cacheFile);
  return cached;
}
let cached: Promise<MachineDefaults> | undefined;

const ASKED = 'nix show-config';

export interface MachineDefaultsOptions {
  /**
   * Where Nix's answer is kept between runs (see machineDefaultsCache.ts):
   * `nix show-config` is a ~100 ms CPU start of Nix, on the same cores as
   * the start of the build it configures.
   */
  cacheFile?: string;
}

function askNixOrCompute(): Promise<MachineDefaults> {
  return askNix().catch((error: unknown) => computed(error instanceof Error ? error.message : String(error)));
}

/** Nix's answer kept from an earlier run for this same Nix on this same machine, else asked (and kept). */
async function cachedOrAsked(cacheFile: string): Promise<MachineDefaults> {
  const key = machineDefaultsKey(process.env);
  const kept = key === undefined ? undefined : readCachedDefaults(cacheFile, key);
  if (kept) return { ...kept, cpus: onlineCpus(), source: ASKED };
  const answer = await askNixOrCompute();
  // What offload computes without a working Nix is never kept: a Nix that works next time is asked then.
  if (key !== undefined && answer.source === ASKED) writeCachedDefaults(cacheFile, key, answer);
  return answer;
}

const ASK_TIMEOUT_MS = 10_000;

function askNix(): Promise<MachineDefaults> {
  const env = {
    ...process.env,
    // A folder that cannot exist: Nix reads no nix.conf (and does not fail on one).
    NIX_CONF_DIR: '/dev/null/offload-no-nix-conf',
    NIX_USER_CONF_FILES: '',
    NIX_CONFIG: '',
  };
  return new Promise((resolve, reject) => {
    execFile(
      'nix',
      ['--extra-experimental-features', 'nix-command', 'show-config', '--json'],
      { env, timeout: ASK_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout) => {
        if (error) return reject(new Error(`nix show-config failed: ${error.message.split('\n')[0]}`));
        try {
          resolve(parseDefaults(stdout));
        } catch (parseError) {
          reject(parseError);
        }
      },
    );
  });
}

/** The `defaultValue`s of `nix show-config --json` (Nix ≥ 2.4). */
export function parseDefaults(json: string): MachineDefaults {
  const settings = JSON.parse(json) as Record<string, { defaultValue?: unknown } | undefined>;
  const strings = (name: string): string[] => {
    const value = settings[name]?.defaultValue;
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw new Error(`nix show-config --json has no list default for ${name}`);
    return value;
  };
  const system = settings.system?.defaultValue;
  if (typeof system !== 'string') throw new Error('nix show-config --json has no default for system');
  return { system, extraPlatforms: strings('extra-platforms'), systemFeatures: strings('system-features'), cpus: onlineCpus(), source: ASKED };
}

function computed(why: string): MachineDefaults {
  const system = nixSystemOf(process.arch, process.platform);
  return {
    system,
    extraPlatforms: system === 'x86_64-linux' ? ['i686-linux'] : [],
    systemFeatures: ['benchmark', 'big-parallel', 'nixos-test', ...(machineSources.kvmUsable() ? ['kvm'] : [])],
    cpus: onlineCpus(),
    source: `computed by offload (${why})`,
  };
}

function onlineCpus(): number {
  return Math.max(1, cpus().length);
}
