import { accessSync, constants, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import type { MachineDefaults } from './knownSettings.js';

/**
 * Nix's machine defaults (`system`, `extra-platforms`, `system-features`)
 * kept between runs. They depend on nothing a user configures (Nix is asked
 * with no nix.conf), only on which Nix answers and on the machine: its
 * CPU (micro-architecture levels from CPUID in newer Nix) and whether
 * /dev/kvm is usable. The key names all of those, so another Nix binary
 * (an upgrade, another profile on PATH, a rebuilt one), another CPU or a
 * change to /dev/kvm asks Nix again. The number of CPUs is never kept: it
 * is counted at every start.
 */
const FORMAT = 1;

type Kept = Pick<MachineDefaults, 'system' | 'extraPlatforms' | 'systemFeatures'>;

/** What the answer depends on; undefined when there is no `nix` on PATH to identify (Nix is then asked, and fails). */
export function machineDefaultsKey(env: NodeJS.ProcessEnv, read: KeySources = machineSources): string | undefined {
  const nix = read.nixBinary(env.PATH ?? '');
  if (nix === undefined) return undefined;
  return JSON.stringify({ format: FORMAT, nix, kvm: read.kvmUsable(), cpu: read.cpu() });
}

/** How the key's parts are read; tests give their own. */
export interface KeySources {
  /** The `nix` that PATH leads to, as a file: its real path and what changes when it is replaced. */
  nixBinary(path: string): string | undefined;
  kvmUsable(): boolean;
  /** The CPU's model and feature flags. */
  cpu(): string;
}

export const machineSources: KeySources = {
  nixBinary(path) {
    for (const dir of path.split(delimiter)) {
      if (!isAbsolute(dir)) continue;
      const candidate = join(dir, 'nix');
      try {
        accessSync(candidate, constants.X_OK);
        const real = realpathSync(candidate);
        const { dev, ino, size, mtimeMs, ctimeMs } = statSync(real);
        return `${real} ${dev}:${ino} ${size} ${mtimeMs} ${ctimeMs}`;
      } catch {
        // Not here (or not executable): the next PATH entry, as execvp looks.
      }
    }
    return undefined;
  },
  kvmUsable() {
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
      return true;
    } catch {
      return false;
    }
  },
  cpu() {
    let info = '';
    try {
      info = readFileSync('/proc/cpuinfo', 'latin1');
    } catch {
      // No /proc/cpuinfo: the model alone.
    }
    const field = (name: string) => new RegExp(`^${name}\\s*:(.*)$`, 'm').exec(info)?.[1]?.trim();
    // The model from the text just read where it has one (os.cpus() would read /proc/cpuinfo again, and more).
    return `${field('model name') ?? cpus()[0]?.model ?? ''} ${field('flags') ?? ''}`;
  },
};

/** The kept answer when it was made under `key` and is well-formed; undefined otherwise (ask Nix). */
export function readCachedDefaults(file: string, key: string): Kept | undefined {
  try {
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { key?: unknown; defaults?: Partial<Record<keyof Kept, unknown>> };
    const d = kept.defaults;
    if (kept.key !== key || !d || typeof d.system !== 'string' || !isStrings(d.extraPlatforms) || !isStrings(d.systemFeatures)) return undefined;
    return { system: d.system, extraPlatforms: d.extraPlatforms, systemFeatures: d.systemFeatures };
  } catch {
    return undefined;
  }
}

/**
 * Keeps Nix's answer under `key`, replacing the file in one rename so a
 * concurrent start reads the old answer or the new one, never half. A
 * cache that cannot be written costs only the next start's `nix show-config`.
 */
export function writeCachedDefaults(file: string, key: string, defaults: Kept): void {
  const partial = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const { system, extraPlatforms, systemFeatures } = defaults;
    writeFileSync(partial, `${JSON.stringify({ key, defaults: { system, extraPlatforms, systemFeatures } })}\n`, { mode: 0o600 });
    renameSync(partial, file);
  } catch {
    try {
      rmSync(partial, { force: true });
    } catch {
      // No folder to hold it: nothing was written.
    }
  }
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}
