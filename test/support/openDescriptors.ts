import { readdirSync, readlinkSync } from 'node:fs';

/** Descriptors of this process open on `path`. */
export function openOn(path: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count++;
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return count;
}
