/**
 * Load and free store space of a builder, parsed from the pressure probe's
 * command (builderPressure.ts).
 * Pure; `undefined` means the output was not what the command prints.
 */

/** `/proc/loadavg`: `0.52 0.61 0.70 2/345 6789`. */
export function parseLoadavg(text: string): { one: number; five: number; fifteen: number } | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)(?:\s|$)/.exec(text);
  if (!match) return undefined;
  return { one: Number(match[1]), five: Number(match[2]), fifteen: Number(match[3]) };
}

/**
 * A CPU list as the kernel writes it (`Cpus_allowed_list` in /proc/PID/status:
 * `0-3,8-11`): how many CPUs it names, which is what `nproc` counts.
 */
export function parseCpuList(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$/.test(trimmed)) return undefined;
  let count = 0;
  for (const range of trimmed.split(',')) {
    const [first, last = first] = range.split('-').map(Number) as [number, number?];
    if (last < first) return undefined;
    count += last - first + 1;
  }
  // The kernel's limit is 8192 CPUs; a larger count is not a CPU list.
  return count <= 8192 ? count : undefined;
}

export interface StoreSpace {
  /** Filesystem holding the store, as df names it. */
  filesystem: string;
  mountPoint: string;
  totalKiB: number;
  availableKiB: number;
  /** df's Capacity column: used share of the space not reserved for root. */
  usedPercent: number;
}

/**
 * POSIX `df -Pk`: a header, then exactly one line per filesystem:
 * `Filesystem 1024-blocks Used Available Capacity Mounted on`. The numbers
 * are matched from the right, since the filesystem name may contain spaces.
 */
export function parseDfStore(text: string): StoreSpace | undefined {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const header = lines[0];
  const row = lines[1];
  if (!header || !row || !/^Filesystem\s/.test(header)) return undefined;
  const match = /^(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+(\/.*)$/.exec(row.trim());
  if (!match) return undefined;
  return {
    filesystem: match[1]!,
    totalKiB: Number(match[2]),
    availableKiB: Number(match[4]),
    usedPercent: Number(match[5]),
    mountPoint: match[6]!,
  };
}
