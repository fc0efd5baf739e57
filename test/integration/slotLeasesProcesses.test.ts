import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlotLeases } from '../../src/run/slotLeases.js';
import type { WorkerConfig } from '../support/leaseWorker.js';

/**
 * Separate offload-like processes sharing one slot file: plain Node children,
 * no Nix or sshd needed.
 */
const root = join(import.meta.dirname, '..', '..');
const workerScript = join(root, 'test', 'support', 'leaseWorker.ts');

let dir: string;
let file: string;
const workers: ChildProcess[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-slot-procs-'));
  file = join(dir, 'slots.sqlite');
});

afterEach(() => {
  for (const worker of workers.splice(0)) if (worker.exitCode === null) worker.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface Worker {
  child: ChildProcess;
  /** Resolves with the next stdout line that starts with `prefix`. */
  line(prefix: string, timeoutMs: number): Promise<string>;
  /** Whether a line starting with `prefix` was already printed. */
  printed(prefix: string): boolean;
}

function startWorker(config: Omit<WorkerConfig, 'file'>): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', workerScript, JSON.stringify({ ...config, file })], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  workers.push(child);
  const seen: string[] = [];
  const listeners: Array<(line: string) => void> = [];
  createInterface({ input: child.stdout }).on('line', (text) => {
    seen.push(text);
    for (const listener of listeners.slice()) listener(text);
  });
  return {
    child,
    printed: (prefix) => seen.some((text) => text.startsWith(prefix)),
    line: (prefix, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${config.name} printed no "${prefix}" within ${timeoutMs} ms`)), timeoutMs);
        const listener = (text: string): void => {
          if (!text.startsWith(prefix)) return;
          clearTimeout(timer);
          listeners.splice(listeners.indexOf(listener), 1);
          resolve(text);
        };
        listeners.push(listener);
      }),
  };
}

interface LogEntry {
  worker: string;
  event: 'acquire' | 'release';
  slot: number;
  t: number;
}

/** Most leases held at one instant, and whether a slot ever had two holders. */
function overlap(entries: LogEntry[]): { max: number; slotShared: boolean } {
  // At equal times a release comes first: it happened before the next grant was even logged.
  const events = [...entries].sort((a, b) => a.t - b.t || (a.event === 'release' ? -1 : 1));
  const holders = new Map<number, number>();
  let held = 0;
  let max = 0;
  let slotShared = false;
  for (const entry of events) {
    const count = holders.get(entry.slot) ?? 0;
    if (entry.event === 'release') {
      holders.set(entry.slot, count - 1);
      held--;
      continue;
    }
    slotShared ||= count > 0;
    holders.set(entry.slot, count + 1);
    held++;
    max = Math.max(max, held);
  }
  return { max, slotShared };
}

describe('slot leases across processes', () => {
  it('four processes taking five 100–200 ms leases each on a 3-slot host never hold more than 3 at once', async () => {
    const log = join(dir, 'leases.log');
    const names = ['w1', 'w2', 'w3', 'w4'];
    const started = names.map((name) =>
      startWorker({ name, host: 'h', maxJobs: 3, leases: 5, mode: 'cycle', holdMs: [100, 200], log, waitForGo: true }),
    );
    // Every worker is up before any starts, so all four contend for three slots.
    await Promise.all(started.map((w) => w.line('ready', 60_000)));
    const exits = started.map((w) => once(w.child, 'exit'));
    for (const w of started) w.child.stdin!.write('go\n');
    const codes = await Promise.all(exits);
    expect(codes.map(([code]) => code)).toEqual([0, 0, 0, 0]);

    const entries = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((text) => JSON.parse(text) as LogEntry);
    for (const name of names) {
      expect(entries.filter((e) => e.worker === name && e.event === 'acquire')).toHaveLength(5);
      expect(entries.filter((e) => e.worker === name && e.event === 'release')).toHaveLength(5);
    }
    const { max, slotShared } = overlap(entries);
    expect(max).toBe(3);
    expect(slotShared).toBe(false);
    expect(entries.every((e) => e.slot >= 0 && e.slot < 3)).toBe(true);

    const slots = new SlotLeases({ file });
    try {
      expect(slots.inUse('h')).toBe(0);
    } finally {
      slots.close();
    }
  });

  it('gives the slot of a SIGKILLed holder to a waiting process', async () => {
    const holder = startWorker({ name: 'holder', host: 'k', maxJobs: 3, leases: 3, mode: 'hold' });
    await holder.line('held', 60_000);
    const waiter = startWorker({ name: 'waiter', host: 'k', maxJobs: 3, leases: 1, mode: 'cycle' });
    await waiter.line('ready', 60_000);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(waiter.printed('acquired')).toBe(false);

    const killedAt = Date.now();
    holder.child.kill('SIGKILL');
    const acquired = await waiter.line('acquired', 5_000);
    expect(Number(acquired.split(' ')[1])).toBeLessThan(3);
    // One poll (≤ 300 ms with jitter) after the holder is gone, not some long timeout.
    expect(Date.now() - killedAt).toBeLessThan(2_000);
    const [code] = await once(waiter.child, 'exit');
    expect(code).toBe(0);

    const slots = new SlotLeases({ file });
    try {
      expect(slots.inUse('k')).toBe(0);
    } finally {
      slots.close();
    }
  });
});
