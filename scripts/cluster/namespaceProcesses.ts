import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * A builder is everything running in its mount namespace: the namespace
 * holder, the sshd listener, per-connection sshd processes (which call setsid,
 * so process groups do not cover them) and the Nix processes they start.
 * Tracking by namespace finds all of them.
 */

/** `mnt:[4026532176]`, or undefined once the process is gone (or a zombie). */
export function mountNamespaceOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** Live (non-zombie) processes in the namespace. */
export function pidsInNamespace(namespace: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (mountNamespaceOf(pid) === namespace && !isZombie(pid)) pids.push(pid);
  }
  return pids;
}

export function signalNamespace(namespace: string, signal: NodeJS.Signals, except: number[] = []): number[] {
  const signalled: number[] = [];
  for (const pid of pidsInNamespace(namespace)) {
    if (except.includes(pid)) continue;
    try {
      process.kill(pid, signal);
      signalled.push(pid);
    } catch {
      // Exited between listing and signalling.
    }
  }
  return signalled;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until none of `pids` is alive; returns the ones still alive at the deadline. */
export async function waitForExit(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await sleep(20);
    alive = alive.filter(isAlive);
  }
  return alive;
}

export function isAlive(pid: number): boolean {
  return !isZombie(pid);
}

/**
 * Signals every process in the namespace (except `except`) until none is left:
 * SIGTERM first, then SIGKILL. "None left" must hold twice in a row, because a
 * process forked while the others were exiting is only seen on a later look.
 */
export async function emptyNamespace(namespace: string, timeoutMs: number, except: number[] = []): Promise<void> {
  const others = () => pidsInNamespace(namespace).filter((pid) => !except.includes(pid));
  let calmLooks = 0;
  for (let round = 0; round < 10 && calmLooks < 2; round++) {
    const alive = others();
    if (alive.length === 0) {
      calmLooks++;
      await sleep(50);
      continue;
    }
    calmLooks = 0;
    signalNamespace(namespace, 'SIGCONT', except); // a stopped process does not act on SIGTERM
    signalNamespace(namespace, round === 0 ? 'SIGTERM' : 'SIGKILL', except);
    await waitForExit(alive, round === 0 ? timeoutMs : 2_000);
  }
  // A SIGKILLed process cannot run again, but one in uninterruptible sleep (an
  // fsync or a store write on a loaded machine) only dies once the kernel
  // finishes its I/O: give those time before calling anything a survivor.
  const killed = others();
  const left = killed.length === 0 ? [] : await waitForExit(killed, 30_000);
  if (left.length > 0) throw new Error(`processes survived SIGKILL in ${namespace}: ${left.map(describeProcess).join('; ')}`);
}

/** `pid state command (wchan)`, so a survivor says what it was doing. */
function describeProcess(pid: number): string {
  const read = (file: string) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, 'utf8');
    } catch {
      return '';
    }
  };
  const stat = read('stat');
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  const command = read('cmdline').split('\0').join(' ').trim().slice(0, 120);
  return `${pid} ${state} ${command} (${read('wchan') || '?'})`;
}
