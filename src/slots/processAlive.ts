import { readFileSync } from 'node:fs';

/**
 * Who owns a slot lease, precisely enough to tell later whether that owner
 * still runs. A pid alone is not enough: after a crash the kernel may hand the
 * same pid to an unrelated process, which would then "hold" the slot forever.
 * The start time (clock ticks since boot, /proc/<pid>/stat field 22) and the
 * boot id pin the pid to one process of one boot.
 */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat; null where /proc is missing (not Linux). */
  startTime: string | null;
  /** /proc/sys/kernel/random/boot_id; null where it is missing. */
  bootId: string | null;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

interface ProcStat {
  /** Field 3: R, S, D, Z (zombie), X (dead)... */
  state: string;
  /** Field 22. */
  startTime: string;
}

function readProcStat(pid: number): ProcStat | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may itself contain spaces
  // and parentheses, so count fields from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 is fields[19].
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return undefined;
  return { state, startTime };
}

/** The start time of a running process, or undefined if /proc has no such process (or no /proc). */
export function processStartTime(pid: number): string | undefined {
  return readProcStat(pid)?.startTime;
}

export function currentBootId(): string | null {
  return readText('/proc/sys/kernel/random/boot_id')?.trim() || null;
}

export function currentProcessIdentity(): ProcessIdentity {
  return { pid: process.pid, startTime: processStartTime(process.pid) ?? null, bootId: currentBootId() };
}

/** Signal 0 checks existence without touching the process; EPERM means it exists but is someone else's. */
function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the process an identity was taken from is still running. A different
 * boot, a vanished pid or a pid whose start time changed (recycled) all mean
 * no, and so does a zombie (killed, not yet reaped). When /proc cannot say
 * (no /proc, or hidden by hidepid) the pid's mere existence decides, erring towards "alive" so a live owner never loses its slot.
 */
export function isProcessAlive(owner: ProcessIdentity, bootId: string | null = currentBootId()): boolean {
  if (owner.bootId !== null && bootId !== null && owner.bootId !== bootId) return false;
  if (!Number.isSafeInteger(owner.pid) || owner.pid <= 0) return false;
  if (!pidExists(owner.pid)) return false;
  const stat = readProcStat(owner.pid);
  if (stat === undefined) return true;
  // A killed process stays a zombie until its parent reaps it; it holds nothing any more.
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return owner.startTime === null || stat.startTime === owner.startTime;
}
