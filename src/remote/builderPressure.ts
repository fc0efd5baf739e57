import type { PressureLimitOverrides } from '../config/machineSpec.js';
import { parseCpuList, parseDfStore, parseLoadavg, type StoreSpace } from './builderMetrics.js';

/**
 * How loaded a builder is, from one fixed command over its SSH connection:
 * PSI (`/proc/pressure/{cpu,memory,io}`, avg10), the load average where PSI
 * is missing, and free space on the filesystems of the store and of the
 * build directory. Other users, Hydra or a human's `nix build` may load a
 * builder offload does not coordinate with; a builder over a limit gets no
 * new job until it recovers (what guix offload and Hydra's queue runner do).
 * Pure: parsing and limits.
 *
 * The /proc files are read with the shell's own `read`, and one `df` names
 * both filesystems: every run looks at every builder at its start (and then
 * every few seconds while jobs wait), on machines whose cores the builds
 * share, and a process per file made a look 8 processes (7 besides the
 * shell); it is 2 now. The CPU count is the shell's own affinity
 * (`Cpus_allowed_list`), which is what `nproc` counts. `machines check`
 * runs the same command and reads the store's whole df row from it (see
 * parsePressureLook), so it too needs no `df` of its own.
 */
export const PRESSURE_COMMAND = [
  // Prints each line of a file that can be read; nothing (and no error) for one that cannot.
  `p() { [ -r "$1" ] && while IFS= read -r l; do printf '%s\\n' "$l"; done < "$1"; }`,
  "echo '@cpu'; p /proc/pressure/cpu",
  "echo '@memory'; p /proc/pressure/memory",
  "echo '@io'; p /proc/pressure/io",
  "echo '@loadavg'; p /proc/loadavg",
  // /proc/self is the shell itself, whose affinity is what nproc would have counted.
  "echo '@cpus'; while IFS= read -r l; do case $l in Cpus_allowed_list:*) printf '%s\\n' \"${l#*:}\";; esac; done < /proc/self/status",
  // A store that has never held a path has no /nix/store yet; Nix will create it on /nix.
  's=/nix/store; [ -d $s ] || s=/nix',
  // df leaves out a name it cannot stat: without /nix its one row would pass for the store's.
  "if [ -d $s ]; then echo '@df'; df -Pk \"$s\" \"${TMPDIR:-/tmp}\"; else echo '@buildDf'; df -Pk \"${TMPDIR:-/tmp}\"; fi",
].join('; ');

export interface BuilderPressure {
  /** PSI avg10, percent; undefined where the kernel has no PSI. */
  cpuSomeAvg10?: number;
  memoryFullAvg10?: number;
  ioSomeAvg10?: number;
  load1?: number;
  cpus?: number;
  /** Free share of the filesystems holding the store and the build directory, percent. */
  storeFreePercent?: number;
  storeFreeKiB?: number;
  buildDirFreePercent?: number;
  buildDirFreeKiB?: number;
}

/** Above a limit (below, for free space) the builder gets no new job. null: not checked. */
export interface PressureLimits {
  cpuSomeAvg10: number | null;
  memoryFullAvg10: number | null;
  ioSomeAvg10: number | null;
  /** Load average over one minute. Default: the builder's CPU count, used only without PSI; a number is always used. */
  load1: number | null | 'cpus';
  /** Free space as a share of the filesystem, percent: off by default (see DEFAULT_PRESSURE_LIMITS). */
  storeFreePercent: number | null;
  buildDirFreePercent: number | null;
  /** Free space in MiB, as df's "Available" (what a build running as a user can still write). */
  storeFreeMiB: number | null;
  buildDirFreeMiB: number | null;
}

/**
 * CPU some > 75 %, memory full > 80 %, load1 > cores (Hydra's queue runner),
 * and under 1 GiB free. Free space is an absolute floor by default, not a
 * share: a share says nothing about what fits (10 % of a 4 TB disk is
 * 400 GB, and a disk whose root-reserved blocks df leaves out of "Available"
 * shows 9 % free with tens of GB to spare), and a builder over a limit waits
 * for space that may never come, so a share would stall runs that Nix would
 * build. guix offload's floor is 100 MiB; 1 GiB leaves room for a build's
 * outputs and temporaries. A share can still be asked for per machine.
 */
export const DEFAULT_PRESSURE_LIMITS: PressureLimits = {
  cpuSomeAvg10: 75,
  memoryFullAvg10: 80,
  ioSomeAvg10: null,
  load1: 'cpus',
  storeFreePercent: null,
  buildDirFreePercent: null,
  storeFreeMiB: 1024,
  buildDirFreeMiB: 1024,
};

export function pressureLimits(overrides: PressureLimitOverrides | undefined): PressureLimits {
  return { ...DEFAULT_PRESSURE_LIMITS, ...(overrides ?? {}) };
}

/** What one look at a builder says. */
export interface PressureLook {
  pressure: BuilderPressure;
  /** The store's filesystem as df names it; only `machines check` shows it, a run's samples keep the free space alone. */
  store?: StoreSpace;
}

/** Parses PRESSURE_COMMAND's output; whatever a section lacks stays undefined. */
export function parsePressure(text: string): BuilderPressure {
  return parsePressureLook(text).pressure;
}

export function parsePressureLook(text: string): PressureLook {
  const sections = new Map<string, string>();
  let current = '';
  for (const line of text.split('\n')) {
    const marker = /^@(\w+)$/.exec(line.trim());
    if (marker) {
      current = marker[1]!;
      sections.set(current, '');
    } else if (current !== '') sections.set(current, `${sections.get(current)}${line}\n`);
  }
  const out: BuilderPressure = {};
  const psi = (name: string, kind: 'some' | 'full') => {
    const match = new RegExp(`^${kind}\\s+avg10=(\\d+(?:\\.\\d+)?)\\s`, 'm').exec(sections.get(name) ?? '');
    const value = match ? Number(match[1]) : undefined;
    return value !== undefined && value >= 0 && value <= 100 ? value : undefined;
  };
  const set = <K extends keyof BuilderPressure>(key: K, value: BuilderPressure[K] | undefined) => {
    if (value !== undefined) out[key] = value;
  };
  set('cpuSomeAvg10', psi('cpu', 'some'));
  set('memoryFullAvg10', psi('memory', 'full'));
  set('ioSomeAvg10', psi('io', 'some'));
  set('load1', parseLoadavg(sections.get('loadavg') ?? '')?.one);
  set('cpus', parseCpuList(sections.get('cpus') ?? ''));
  // One df for both: the store's row, then the build directory's (missing when that directory is).
  // Without a store directory df was asked about the build directory alone.
  const [store, buildDir] = sections.has('df') ? dfRows(sections.get('df')!, 2) : [undefined, dfRows(sections.get('buildDf') ?? '', 1)[0]];
  for (const [df, percent, kib] of [
    [store, 'storeFreePercent', 'storeFreeKiB'],
    [buildDir, 'buildDirFreePercent', 'buildDirFreeKiB'],
  ] as const) {
    if (df && df.totalKiB > 0) {
      set(percent, Math.round((df.availableKiB / df.totalKiB) * 1000) / 10);
      set(kib, df.availableKiB);
    }
  }
  return { pressure: out, ...(store && { store }) };
}

/** The rows of `df -Pk` asked about `most` names, in their order; none when its output is not that. */
function dfRows(text: string, most: number): Array<StoreSpace | undefined> {
  const [header, ...rows] = text.split('\n').filter((line) => line.trim() !== '');
  if (header === undefined || rows.length > most) return [];
  return rows.map((row) => parseDfStore(`${header}\n${row}`));
}

/** Why the builder counts as loaded: one phrase per limit it is over; empty when it is not. */
export function pressureReasons(p: BuilderPressure, limits: PressureLimits): string[] {
  const reasons: string[] = [];
  const over = (value: number | undefined, limit: number | null, what: string) => {
    if (value !== undefined && limit !== null && value > limit) reasons.push(`${what} ${value}% > ${limit}%`);
  };
  over(p.cpuSomeAvg10, limits.cpuSomeAvg10, 'CPU pressure');
  over(p.memoryFullAvg10, limits.memoryFullAvg10, 'memory pressure');
  over(p.ioSomeAvg10, limits.ioSomeAvg10, 'I/O pressure');
  const loadLimit = limits.load1 === 'cpus' ? p.cpus : limits.load1;
  // By default the load average only stands in for PSI where the kernel has none; a load
  // limit set for the machine is what its owner asked for, and counts with PSI too.
  const loadCounts = p.cpuSomeAvg10 === undefined || typeof limits.load1 === 'number';
  if (loadCounts && p.load1 !== undefined && loadLimit !== null && loadLimit !== undefined && p.load1 > loadLimit) {
    reasons.push(`load ${p.load1} > ${loadLimit}`);
  }
  const under = (value: number | undefined, limit: number | null, what: string) => {
    if (value !== undefined && limit !== null && value < limit) reasons.push(`${what} ${value}% free < ${limit}%`);
  };
  const underMiB = (kib: number | undefined, limit: number | null, what: string) => {
    if (kib !== undefined && limit !== null && kib < limit * 1024) reasons.push(`${what} ${Math.floor(kib / 1024)} MiB free < ${limit} MiB`);
  };
  under(p.storeFreePercent, limits.storeFreePercent, 'store');
  underMiB(p.storeFreeKiB, limits.storeFreeMiB, 'store');
  under(p.buildDirFreePercent, limits.buildDirFreePercent, 'build dir');
  underMiB(p.buildDirFreeKiB, limits.buildDirFreeMiB, 'build dir');
  return reasons;
}

/** `cpu 12% mem 0% io 1% · store 52% free · build 80% free`, or `load 1.2/4` without PSI. */
export function formatPressure(p: BuilderPressure): string {
  const parts: string[] = [];
  if (p.cpuSomeAvg10 !== undefined) {
    parts.push([`cpu ${Math.round(p.cpuSomeAvg10)}%`, p.memoryFullAvg10 !== undefined ? `mem ${Math.round(p.memoryFullAvg10)}%` : '', p.ioSomeAvg10 !== undefined ? `io ${Math.round(p.ioSomeAvg10)}%` : ''].filter(Boolean).join(' '));
  } else if (p.load1 !== undefined) parts.push(`load ${p.load1}${p.cpus !== undefined ? `/${p.cpus}` : ''}`);
  if (p.storeFreePercent !== undefined) parts.push(`store ${Math.round(p.storeFreePercent)}% free`);
  if (p.buildDirFreePercent !== undefined) parts.push(`build ${Math.round(p.buildDirFreePercent)}% free`);
  return parts.join(' · ');
}
