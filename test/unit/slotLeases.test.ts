import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { currentBootId, isProcessAlive, processStartTime } from '../../src/run/processAlive.js';
import { SlotLeaseError, SlotLeases, defaultSlotLeasesPath, type SlotLease } from '../../src/run/slotLeases.js';

let dir: string;
let file: string;
const open: SlotLeases[] = [];
const children: ChildProcess[] = [];

function leases(): SlotLeases {
  const instance = new SlotLeases({ file });
  open.push(instance);
  return instance;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-slots-'));
  file = join(dir, 'slots.sqlite');
});

afterEach(() => {
  for (const instance of open.splice(0)) instance.close();
  for (const child of children.splice(0)) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const PENDING = Symbol('pending');
/** What the promise settled to within `ms`, or PENDING. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof PENDING> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof PENDING>((resolve) => (timer = setTimeout(() => resolve(PENDING), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function startChild(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  return child;
}

async function firstLine(child: ChildProcess): Promise<string> {
  let text = '';
  for await (const chunk of child.stdout!) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  return text.split('\n')[0]!;
}

/** A lease row as another (possibly long gone) process would have written it. */
function insertForeignLease(host: string, slot: number, pid: number, startTime: string | null, bootId: string | null): void {
  const db = new Database(file);
  db.prepare(
    `INSERT INTO leases (host, slot, pid, start_time, boot_id, owner, acquired_at) VALUES (?, ?, ?, ?, ?, 'foreign', ?)`,
  ).run(host, slot, pid, startTime, bootId, Date.now());
  db.close();
}

describe('SlotLeases', () => {
  it('grants distinct slots up to maxJobs, then makes the next acquire wait for a release', async () => {
    const slots = leases();
    const held = await Promise.all([slots.acquire('h', 3), slots.acquire('h', 3), slots.acquire('h', 3)]);
    expect(held.map((l) => l.slot).sort()).toEqual([0, 1, 2]);
    expect(slots.inUse('h')).toBe(3);
    expect(slots.inUse('other')).toBe(0);

    const next = slots.acquire('h', 3);
    expect(await within(next, 150)).toBe(PENDING);
    expect(slots.tryAcquire('h', 3)).toBeUndefined();

    held[1].release();
    const granted = await within(next, 50);
    expect(granted).not.toBe(PENDING);
    expect((granted as SlotLease).slot).toBe(1);
    expect(slots.inUse('h')).toBe(3);
  });

  it('release is idempotent: a second release does not free another holder’s slot', async () => {
    const slots = leases();
    const a = slots.acquire('h', 1);
    const first = await a;
    first.release();
    const second = await slots.acquire('h', 1);
    first.release();
    expect(slots.inUse('h')).toBe(1);
    expect(slots.tryAcquire('h', 1)).toBeUndefined();
    second.release();
    expect(slots.inUse('h')).toBe(0);
  });

  it('tryAcquire takes a free slot at once and never jumps ahead of a waiting acquire', async () => {
    const a = leases();
    const b = leases();
    const lease = a.tryAcquire('h', 1);
    expect(lease?.slot).toBe(0);
    const waiting = b.acquire('h', 1);
    lease!.release();
    // b's ticket is first in line, so the free slot is not a's to take.
    expect(a.tryAcquire('h', 1)).toBeUndefined();
    expect(((await within(waiting, 1000)) as SlotLease).slot).toBe(0);
  });

  it('counts the leases of every instance on the same file together', async () => {
    const a = leases();
    const b = leases();
    await a.acquire('h', 2);
    await b.acquire('h', 2);
    expect(a.inUse('h')).toBe(2);
    expect(b.tryAcquire('h', 2)).toBeUndefined();
    expect(a.tryAcquire('h', 3)?.slot).toBe(2);
  });

  it('serves waiters of all processes in arrival order, so a re-acquiring holder cannot starve another', async () => {
    const a = leases();
    const b = leases();
    const held = await a.acquire('h', 1);
    const bWaits = b.acquire('h', 1);
    await within(bWaits, 20);
    const aAgain = a.acquire('h', 1);
    held.release();
    expect(await within(aAgain, 100)).toBe(PENDING);
    const bLease = (await within(bWaits, 1000)) as SlotLease;
    expect(bLease).not.toBe(PENDING);
    bLease.release();
    expect(await within(aAgain, 1000)).not.toBe(PENDING);
  });

  it('rejects a waiting acquire with the abort reason and gives up its place in line', async () => {
    const a = leases();
    const b = leases();
    const held = await a.acquire('h', 1);
    const controller = new AbortController();
    const waiting = b.acquire('h', 1, controller.signal);
    controller.abort(new Error('run cancelled'));
    await expect(waiting).rejects.toThrow('run cancelled');
    held.release();
    // Had the aborted ticket stayed, nobody could take the slot outside the queue.
    expect(a.tryAcquire('h', 1)?.slot).toBe(0);
  });

  it('rejects at once when the signal has already aborted', async () => {
    const slots = leases();
    const controller = new AbortController();
    controller.abort(new Error('too late'));
    await expect(slots.acquire('h', 4, controller.signal)).rejects.toThrow('too late');
    expect(slots.inUse('h')).toBe(0);
  });

  it('close releases the instance’s leases and rejects its waiters', async () => {
    const a = leases();
    const b = leases();
    await a.acquire('h', 1);
    const aWaits = a.acquire('h', 1);
    const bWaits = b.acquire('h', 1);
    a.close();
    await expect(aWaits).rejects.toBeInstanceOf(SlotLeaseError);
    expect(((await within(bWaits, 1000)) as SlotLease).slot).toBe(0);
    expect(() => a.tryAcquire('h', 1)).toThrow(SlotLeaseError);
  });

  it('refuses maxJobs below 1 instead of waiting forever', () => {
    const slots = leases();
    expect(() => slots.tryAcquire('local', 0)).toThrow(RangeError);
    expect(() => slots.acquire('local', 0)).toThrow(/at least 1/);
  });

  it('reclaims the lease of a process that has exited', async () => {
    const child = startChild('true', []);
    const pid = child.pid!;
    await once(child, 'exit');
    const slots = leases();
    insertForeignLease('h', 0, pid, null, currentBootId());
    expect(slots.inUse('h')).toBe(0);
    expect(slots.tryAcquire('h', 1)?.slot).toBe(0);
  });

  it('reclaims a lease whose owner was killed, even when the waiter is already queued', async () => {
    const child = startChild('sleep', ['30']);
    await once(child, 'spawn');
    const pid = child.pid!;
    const slots = leases();
    insertForeignLease('h', 0, pid, processStartTime(pid)!, currentBootId());
    expect(slots.inUse('h')).toBe(1);
    const waiting = slots.acquire('h', 1);
    expect(await within(waiting, 150)).toBe(PENDING);
    child.kill('SIGKILL');
    expect(((await within(waiting, 1000)) as SlotLease).slot).toBe(0);
  });

  it('does not take a recycled pid for the owner: a different start time or boot means the owner is gone', () => {
    const slots = leases();
    const mine = processStartTime(process.pid)!;
    insertForeignLease('h', 0, process.pid, String(Number(mine) + 1), currentBootId());
    insertForeignLease('h', 1, process.pid, mine, 'another-boot');
    insertForeignLease('h', 2, process.pid, mine, currentBootId());
    expect(slots.inUse('h')).toBe(1);
  });

  it('counts a zombie (killed, never reaped) as gone', async () => {
    // sh forks a short-lived child, then becomes `sleep`, which never reaps it.
    const parent = startChild('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30']);
    const zombie = Number(await firstLine(parent));
    const startTime = processStartTime(zombie)!;
    expect(startTime).toMatch(/^\d+$/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(isProcessAlive({ pid: zombie, startTime, bootId: currentBootId() })).toBe(false);
    const slots = leases();
    insertForeignLease('h', 0, zombie, startTime, currentBootId());
    expect(slots.inUse('h')).toBe(0);
  });
});

describe('processStartTime', () => {
  it('reads field 22 even when the command name has spaces and parentheses', async () => {
    const odd = join(dir, 'x) (y z');
    copyFileSync('/bin/sleep', odd);
    const child = startChild(odd, ['30']);
    await once(child, 'spawn');
    const startTime = processStartTime(child.pid!);
    expect(startTime).toMatch(/^\d+$/);
    // Started after this test process, so later in clock ticks since boot.
    expect(Number(startTime)).toBeGreaterThanOrEqual(Number(processStartTime(process.pid)));
    expect(isProcessAlive({ pid: child.pid!, startTime: startTime!, bootId: currentBootId() })).toBe(true);
  });

  it('is undefined for a pid that does not exist', () => {
    expect(processStartTime(2 ** 22 + 1)).toBeUndefined();
  });
});

describe('defaultSlotLeasesPath', () => {
  it('lives in XDG_CACHE_HOME, else ~/.cache', () => {
    expect(defaultSlotLeasesPath({ XDG_CACHE_HOME: '/c' })).toBe('/c/offload/slots.sqlite');
    expect(defaultSlotLeasesPath({ HOME: '/home/u', XDG_CACHE_HOME: 'relative' })).toBe('/home/u/.cache/offload/slots.sqlite');
  });
});
