import { MachinesFileError } from './errors.js';

/**
 * A machine as written in a machines file or `--builders` string, before
 * ssh_config resolution turns its hostName into an address. Both file formats
 * parse to this, so everything after parsing is format-independent.
 */
export interface MachineSpec {
  /** Name as written in the machines file (an ssh_config alias or a real host). */
  hostName: string;
  sshUser?: string;
  sshKey?: string;
  port?: number;
  systems: string[];
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  maxJobs: number;
  speedFactor: number;
  /** Base64 of the host's public key line (as in Nix's machines file). */
  publicHostKey?: string;
  /** Overrides of the limits above which the builder gets no new job (JSON machines files only). */
  pressure?: PressureLimitOverrides;
}

/** Percentages, except load1 (a load average) and the *FreeMiB floors (MiB); null turns a check off. */
export interface PressureLimitOverrides {
  cpuSomeAvg10?: number | null;
  memoryFullAvg10?: number | null;
  ioSomeAvg10?: number | null;
  load1?: number | null;
  storeFreePercent?: number | null;
  buildDirFreePercent?: number | null;
  storeFreeMiB?: number | null;
  buildDirFreeMiB?: number | null;
}

/**
 * speedFactor divides every estimate. Outside this range a typo or an
 * extreme value (5e-324) makes estimates infinite or zero, and a plan of
 * "InfinityhNaNm" helps nobody; real fleets differ by far less than 1000×.
 */
export const SPEED_FACTOR_RANGE = { min: 0.01, max: 1000 } as const;

export function speedFactorInRange(value: number): boolean {
  return value >= SPEED_FACTOR_RANGE.min && value <= SPEED_FACTOR_RANGE.max;
}

export const SPEED_FACTOR_EXPECTED = `a number from ${SPEED_FACTOR_RANGE.min} to ${SPEED_FACTOR_RANGE.max}`;

/**
 * Refuses two machines with the same hostName: the run keys slots, health
 * and history by it. `duplicate(index, earlier)` says where, in the
 * source's own terms (file and line, or machine number).
 */
export function distinctHostNames<T extends MachineSpec>(machines: T[], duplicate: (index: number, earlier: number) => string): T[] {
  const seen = new Map<string, number>();
  machines.forEach((machine, index) => {
    const earlier = seen.get(machine.hostName);
    if (earlier !== undefined) throw new MachinesFileError([duplicate(index, earlier)]);
    seen.set(machine.hostName, index);
  });
  return machines;
}
