import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { currentBootId, isProcessAlive, processStartTime } from '../../src/slots/processAlive.js';
import { defaultSlotLeasesPath, SqliteSlotLeases } from '../../src/slots/sqliteSlotLeases.js';
import { describeSlotLeasesContract } from '../support/slotLeasesContract.js';
import { waitFor } from '../support/waitFor.js';

let dir: string;
let file: string;
const open: SqliteSlotLeases[] = [];
const children: ChildProcess[] = [];

function leases(): SqliteSlotLeases {
  const instance = new SqliteSlotLeases({ file });
  open.push(instance);
  return instance;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-slots-'));
  file = join(dir, 'slots.sqlite');
});

afterEach(async () => {
  for (const instance of open.splice(0)) await instance.close();
  for (const child of children.splice(0)) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

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

const take = (slots: SqliteSlotLeases, host: string, maxJobs: number) =>
  slots.exchange({ release: [], requests: [{ host, maxJobs, priority: 1 }], waiting: new Map() }).then(([lease]) => lease);

let contractDir: string;
describeSlotLeasesContract('SQLite', () => {
  contractDir = mkdtempSync(join(tmpdir(), 'offload-slots-contract-'));
  const store = join(contractDir, 'slots.sqlite');
  return { runner: async () => new SqliteSlotLeases({ file: store }), store: () => store };
});

describe('SqliteSlotLeases', () => {
  it('upgrades a version 1 file (arrival-order tickets) and refuses a newer one', async () => {
    const db = new Database(file);
    db.exec(`CREATE TABLE leases (host TEXT NOT NULL, slot INTEGER NOT NULL, pid INTEGER NOT NULL, start_time TEXT, boot_id TEXT, owner TEXT NOT NULL, acquired_at INTEGER NOT NULL, PRIMARY KEY (host, slot));
             CREATE TABLE tickets (id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, pid INTEGER NOT NULL, start_time TEXT, boot_id TEXT, owner TEXT NOT NULL);`);
    db.pragma('user_version = 1');
    db.close();
    expect((await take(leases(), 'h', 1))?.slot).toBe(0);
    const raw = new Database(file);
    expect(raw.pragma('user_version', { simple: true })).toBe(2);
    raw.pragma('user_version = 9');
    raw.close();
    expect(() => new SqliteSlotLeases({ file })).toThrow(/schema version 9, newer than this offload understands/);
  });

  it('reclaims the lease of a process that has exited', async () => {
    const child = startChild('true', []);
    const pid = child.pid!;
    await once(child, 'exit');
    const slots = leases();
    insertForeignLease('h', 0, pid, null, currentBootId());
    expect(await slots.inUse('h')).toBe(0);
    expect((await take(slots, 'h', 1))?.slot).toBe(0);
  });

  it('reclaims a lease whose owner was killed', async () => {
    const child = startChild('sleep', ['30']);
    await once(child, 'spawn');
    const pid = child.pid!;
    const slots = leases();
    insertForeignLease('h', 0, pid, processStartTime(pid)!, currentBootId());
    expect(await take(slots, 'h', 1)).toBeUndefined();
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect((await take(slots, 'h', 1))?.slot).toBe(0);
  });

  it('does not take a recycled pid for the owner: a different start time or boot means the owner is gone', async () => {
    const slots = leases();
    const mine = processStartTime(process.pid)!;
    insertForeignLease('h', 0, process.pid, String(Number(mine) + 1), currentBootId());
    insertForeignLease('h', 1, process.pid, mine, 'another-boot');
    insertForeignLease('h', 2, process.pid, mine, currentBootId());
    expect(await slots.inUse('h')).toBe(1);
  });

  it('counts a zombie (killed, never reaped) as gone', async () => {
    // sh forks a short-lived child, then becomes `sleep`, which never reaps it.
    const parent = startChild('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30']);
    const zombie = Number(await firstLine(parent));
    const startTime = processStartTime(zombie)!;
    expect(startTime).toMatch(/^\d+$/);
    // Wait until the child has exited and is a zombie; on a loaded machine that can take a while.
    await waitFor(() => /^\S+ \(.*\) Z /.test(readFileSync(`/proc/${zombie}/stat`, 'utf8')), `${zombie} never became a zombie`, 20);
    expect(isProcessAlive({ pid: zombie, startTime, bootId: currentBootId() })).toBe(false);
    const slots = leases();
    insertForeignLease('h', 0, zombie, startTime, currentBootId());
    expect(await slots.inUse('h')).toBe(0);
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
